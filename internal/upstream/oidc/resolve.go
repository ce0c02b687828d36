package oidc

import (
	"context"
	"errors"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/upstream/idp"
)

// ResolveUser implements ciba.Upstream (CIBA §7.1). Which user a login_hint
// names is only known once the user has signed in at the IdP, so it
// resolves to a user without subject, checked by Exchange against
// MatchClaims. An id_token_hint must be an ID token the IdP issued to the
// client's IdP client_id; it may have expired (CIBA §7.1: the hint is a
// previously issued token). login_hint_token is not supported.
func (u *Upstream) ResolveUser(ctx context.Context, c *ciba.Client, h ciba.Hint) (ciba.User, error) {
	if c == nil {
		return ciba.User{}, ciba.Errorf(ciba.CodeUnauthorizedClient, "the client has no credentials at the identity provider")
	}
	creds, err := u.credentials(c.ID)
	if err != nil {
		return ciba.User{}, err
	}
	switch {
	case h.LoginHintToken != "":
		return ciba.User{}, ciba.Errorf(ciba.CodeInvalidRequest, "login_hint_token is not supported with the oidc upstream")
	case h.IDTokenHint != "":
		return u.resolveIDTokenHint(ctx, creds, h.IDTokenHint)
	case h.LoginHint != "":
		return ciba.User{Display: h.LoginHint}, nil
	default:
		return ciba.User{}, ciba.Errorf(ciba.CodeInvalidRequest, "one of login_hint and id_token_hint is required")
	}
}

func (u *Upstream) resolveIDTokenHint(ctx context.Context, creds idp.Credentials, raw string) (ciba.User, error) {
	p, err := u.provider(ctx)
	if err != nil {
		return ciba.User{}, err
	}
	idt, err := u.verify(ctx, p, creds.ClientID, raw, true)
	if errors.Is(err, ciba.ErrUnavailable) {
		return ciba.User{}, err
	}
	if err != nil {
		return ciba.User{}, &ciba.Error{
			Code:        ciba.CodeInvalidRequest,
			Description: "the id_token_hint is not an ID token the identity provider issued to this client",
			Err:         err,
		}
	}
	if idt.Subject == "" {
		return ciba.User{}, ciba.Errorf(ciba.CodeInvalidRequest, "the id_token_hint has no subject")
	}
	var claims map[string]any
	_ = idt.Claims(&claims) // Verify parsed them already; a failure only loses the display name
	display := idt.Subject
	for _, name := range []string{"preferred_username", "email"} {
		if s, ok := claims[name].(string); ok && s != "" {
			display = s
			break
		}
	}
	return ciba.User{Subject: idt.Subject, Display: display}, nil
}

// CheckUserCode implements ciba.Upstream: the IdP has no CIBA user codes,
// so every code is refused.
func (u *Upstream) CheckUserCode(context.Context, ciba.User, string) error {
	return ciba.Errorf(ciba.CodeInvalidUserCode, "user codes are not supported with the oidc upstream")
}

// SupportsUserCode implements ciba.Upstream: false.
func (u *Upstream) SupportsUserCode() bool { return false }
