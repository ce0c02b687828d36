package app

import (
	"log/slog"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/config"
	"github.com/cibaproxy/cibaproxy/internal/httpapi"
	"github.com/cibaproxy/cibaproxy/internal/passkey"
)

// Passkeys returns the passkey side of the local upstream's approval page
// (docs/passkeys.md), or nil when passkeys cannot be used: every user
// approves with a password, or the relying party id is not a domain name
// (an issuer on an IP address), which is logged unless no user needs it.
func Passkeys(cfg *config.Config, st ciba.Store, signer passkey.Signer, log *slog.Logger) *httpapi.Passkeys {
	methods := make(map[string]string, len(cfg.Upstream.Local.Users))
	type account struct{ subject, username string }
	handles := make(map[string]account, len(cfg.Upstream.Local.Users))
	wanted := cfg.Approval.Method != config.ApprovalPassword
	for _, u := range cfg.Upstream.Local.Users {
		sub := u.Subject
		if sub == "" {
			sub = u.Username
		}
		methods[sub] = cfg.MethodFor(u.Username)
		handles[string(passkey.UserHandle(sub))] = account{sub, u.Username}
		wanted = wanted || methods[sub] != config.ApprovalPassword
	}
	if !wanted {
		return nil
	}
	rp, err := NewRP(cfg)
	if err != nil {
		log.Warn("passkeys are off: users approve with their password", slog.Any("error", err))
		return nil
	}
	return &httpapi.Passkeys{
		RP: rp, Credentials: &passkey.Credentials{Records: st}, Enrolments: &passkey.Enrolments{Records: st},
		Method: func(subject string) string {
			if m, ok := methods[subject]; ok {
				return m
			}
			return cfg.Approval.Method
		},
		Signer: signer, Issuer: cfg.Issuer, SelfEnroll: cfg.Approval.Passkeys.SelfEnrollment,
		Lookup: func(handle []byte) (string, string, bool) {
			a, ok := handles[string(handle)]
			return a.subject, a.username, ok
		},
	}
}

// NewRP returns cibaproxy as a WebAuthn relying party for cfg: the
// issuer's origin, approval.passkeys.rp_id or the issuer's host, the
// pages' service name.
func NewRP(cfg *config.Config) (*passkey.RP, error) {
	name := cfg.Pages.ServiceName
	if name == "" {
		name = "cibaproxy"
	}
	return passkey.NewRP(cfg.Issuer, cfg.Approval.Passkeys.RPID, name)
}
