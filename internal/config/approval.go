package config

import (
	"net"
	"net/url"
	"strings"
	"time"
)

// Approval methods (Approval.Method, User.ApprovalMethod).
const (
	// ApprovalEither: a user with a passkey may approve with it or with
	// the password; a user without one, with the password (the default,
	// as before passkeys).
	ApprovalEither = "either"
	// ApprovalPasskey: only a passkey approves; a user without one must
	// enrol first (cibaproxy users enroll).
	ApprovalPasskey = "passkey"
	// ApprovalPassword: only the password; passkeys are not asked for.
	ApprovalPassword = "password"
)

// Defaults and bounds of the passkey settings.
const (
	defaultEnrollmentTTL = 24 * time.Hour
	minEnrollmentTTL     = 10 * time.Second
	maxEnrollmentTTL     = 30 * 24 * time.Hour
)

// Approval says how the users of the local upstream approve requests on
// the approval page and the device page.
type Approval struct {
	// Method is "either" (default), "passkey" or "password"; a user's
	// approval_method overrides it. "passkey" is the phishing-resistant
	// choice: an approval link forwarded to the wrong person, or a page
	// that imitates cibaproxy's, cannot be approved without the user's
	// authenticator, and its challenge is bound to the one request.
	Method string `yaml:"method"`

	// Passkeys configures WebAuthn.
	Passkeys Passkeys `yaml:"passkeys"`
}

// Passkeys configures cibaproxy as a WebAuthn relying party.
type Passkeys struct {
	// RPID is the relying party id passkeys are bound to: the issuer's
	// host name (default) or a registrable suffix of it ("example.com"
	// for https://ciba.example.com). It must be a domain name, never an
	// IP address (browsers refuse those). Changing it orphans every
	// passkey registered under the old one.
	RPID string `yaml:"rp_id"`

	// EnrollmentTTL is how long a link from `cibaproxy users enroll`
	// stays valid: default 24h, 10s to 720h. Each link is single use.
	EnrollmentTTL time.Duration `yaml:"enrollment_ttl"`

	// SelfEnrollment lets a user add a passkey themselves, right after
	// approving a request with their password on the approval page or the
	// device page: the "Approved" page offers "Add a passkey for next
	// time", through a one-time enrolment of a few minutes bound to that
	// browser and that approval. Only for users whose approval method is
	// "either" (a user who must use a passkey cannot approve with a
	// password; one who must use a password has no use for a passkey).
	// Default false: only `cibaproxy users enroll` issues enrolments.
	SelfEnrollment bool `yaml:"self_enrollment"`
}

func (v *validator) approvalDefaults(a *Approval) {
	if a.Method == "" {
		a.Method = ApprovalEither
	}
	if !v.src.set["approval.passkeys.enrollment_ttl"] {
		a.Passkeys.EnrollmentTTL = defaultEnrollmentTTL
	}
}

// isApprovalMethod reports whether m is one of the methods.
func isApprovalMethod(m string) bool {
	return m == ApprovalEither || m == ApprovalPasskey || m == ApprovalPassword
}

// checkApproval checks approval and the users' approval_method.
func (v *validator) checkApproval(c *Config) {
	a := &c.Approval
	if !isApprovalMethod(a.Method) {
		v.fail("approval.method", "must be passkey, password or either, got %q", abbrev(a.Method, 40))
	}
	for i, u := range c.Upstream.Local.Users {
		if u.ApprovalMethod == "" {
			continue
		}
		if !isApprovalMethod(u.ApprovalMethod) {
			v.fail(joinKey(joinIndex("upstream.local.users", i), "approval_method"),
				"must be passkey, password or either (or empty for approval.method), got %q", abbrev(u.ApprovalMethod, 40))
		}
	}
	if ttl := a.Passkeys.EnrollmentTTL; ttl < minEnrollmentTTL || ttl > maxEnrollmentTTL {
		v.fail("approval.passkeys.enrollment_ttl", "must be between %v and %v, got %v", minEnrollmentTTL, maxEnrollmentTTL, ttl)
	}
	if c.Upstream.Type != UpstreamLocal {
		if a.Passkeys.SelfEnrollment {
			v.fail("approval.passkeys.self_enrollment", "applies to the local upstream only: with upstream.type %s the user signs in at the identity provider", c.Upstream.Type)
		}
		if v.src.set["approval.method"] && a.Method != ApprovalEither || hasUserMethods(c.Upstream.Local.Users) {
			v.fail("approval.method", "applies to the local upstream only: with upstream.type %s the user signs in at the identity provider", c.Upstream.Type)
		}
		return
	}
	host := issuerHost(c.Issuer)
	if a.Passkeys.RPID != "" {
		id := strings.ToLower(a.Passkeys.RPID)
		switch {
		case net.ParseIP(id) != nil:
			v.fail("approval.passkeys.rp_id", "must be a domain name, not an IP address: browsers bind passkeys to domain names only")
		case host != "" && host != id && !strings.HasSuffix(host, "."+id):
			v.fail("approval.passkeys.rp_id", "must be the issuer's host name %q or a suffix of it after a dot (WebAuthn §5.1.3), got %q", host, abbrev(a.Passkeys.RPID, 80))
		}
		return
	}
	// Only a method that insists on passkeys makes an IP issuer an
	// error; with "either" the pages fall back to the password.
	needs := a.Method == ApprovalPasskey
	for _, u := range c.Upstream.Local.Users {
		needs = needs || u.ApprovalMethod == ApprovalPasskey
	}
	if needs && net.ParseIP(host) != nil {
		v.fail("approval.method", "passkeys need a domain name, but the issuer's host %s is an IP address: browsers bind passkeys to domain names only (on this machine, use http://localhost:PORT as the issuer)", host)
	}
}

// hasUserMethods reports whether any user sets approval_method.
func hasUserMethods(users []User) bool {
	for _, u := range users {
		if u.ApprovalMethod != "" {
			return true
		}
	}
	return false
}

// issuerHost is the issuer URL's host name, lower case ("" if it does not
// parse: checkIssuer reports that).
func issuerHost(issuer string) string {
	u, err := url.Parse(issuer)
	if err != nil {
		return ""
	}
	return strings.ToLower(u.Hostname())
}

// MethodFor returns the approval method of the user with the given
// username: their approval_method, else approval.method.
func (c *Config) MethodFor(username string) string {
	for _, u := range c.Upstream.Local.Users {
		if u.Username == username && u.ApprovalMethod != "" {
			return u.ApprovalMethod
		}
	}
	return c.Approval.Method
}
