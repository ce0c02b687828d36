package passkey

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
)

// ErrRefused is an enrolment or assertion that does not verify: wrong
// challenge (another request's), origin or signature, no user
// verification, an unknown credential, or a sign count that went back
// (a cloned authenticator). The wrapped error says which, for the log.
var ErrRefused = errors.New("passkey: refused")

// RP is cibaproxy as a WebAuthn relying party: its id (the issuer's host
// name, or a registrable suffix of it) and the origin the pages are served
// from. User verification is required in both ceremonies.
type RP struct {
	w *webauthn.WebAuthn
}

// NewRP returns the relying party of the pages at origin (the issuer's
// scheme and host), with id rpID ("" for the origin's host) and the name
// authenticators show.
func NewRP(origin, rpID, name string) (*RP, error) {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("passkey: the origin %q is not a URL", origin)
	}
	if rpID == "" {
		rpID = u.Hostname()
	}
	if err := CheckRPID(rpID); err != nil {
		return nil, err
	}
	if name == "" {
		name = rpID
	}
	w, err := webauthn.New(&webauthn.Config{
		RPID:          rpID,
		RPDisplayName: name,
		RPOrigins:     []string{u.Scheme + "://" + u.Host},
		AuthenticatorSelection: protocol.AuthenticatorSelection{
			ResidentKey:      protocol.ResidentKeyRequirementPreferred,
			UserVerification: protocol.VerificationRequired,
		},
		AttestationPreference: protocol.PreferNoAttestation,
	})
	if err != nil {
		return nil, fmt.Errorf("passkey: %w", err)
	}
	return &RP{w: w}, nil
}

// CheckRPID returns why id cannot be a WebAuthn relying party id: browsers
// take a domain name only ("localhost" included), never an IP address.
func CheckRPID(id string) error {
	if net.ParseIP(id) != nil {
		return fmt.Errorf("passkey: the relying party id %q is an IP address; WebAuthn needs a domain name (for a test on this machine, use http://localhost:PORT as the issuer)", id)
	}
	if err := protocol.ValidateRPID(id); err != nil {
		return fmt.Errorf("passkey: the relying party id %q is not a domain name: %w", id, err)
	}
	return nil
}

// ID is the relying party id.
func (rp *RP) ID() string { return rp.w.Config.RPID }

// user is a cibaproxy user as the library sees one.
type user struct {
	subject, name string
	creds         []webauthn.Credential
}

func newUser(subject, name string, list []Credential) *user {
	u := &user{subject: subject, name: name}
	for _, c := range list {
		u.creds = append(u.creds, c.WebAuthn)
	}
	return u
}

// WebAuthnID is the user handle (UserHandle).
func (u *user) WebAuthnID() []byte { return UserHandle(u.subject) }

// UserHandle is the WebAuthn user handle of the user with the given
// subject: a hash of it (stable, 32 bytes, and not the subject itself),
// which a discoverable assertion returns.
func UserHandle(subject string) []byte {
	sum := sha256.Sum256([]byte("cibaproxy user handle\x00" + subject))
	return sum[:]
}
func (u *user) WebAuthnName() string                       { return u.name }
func (u *user) WebAuthnDisplayName() string                { return u.name }
func (u *user) WebAuthnCredentials() []webauthn.Credential { return u.creds }

// enrolmentChallenge is the registration challenge of an enrolment link:
// derived from its token, so nothing is stored between the page and its
// answer, and the link is single use (Enrolments.Take).
func enrolmentChallenge(token string) []byte {
	sum := sha256.Sum256([]byte("cibaproxy passkey enrolment challenge\x00" + token))
	return sum[:]
}

// beginEnrol is the creation options and session of an enrolment.
func (rp *RP) beginEnrol(u *user, token string) (*protocol.CredentialCreation, *webauthn.SessionData, error) {
	challenge := enrolmentChallenge(token)
	creation, session, err := rp.w.BeginRegistration(u,
		webauthn.WithExclusions(webauthn.Credentials(u.creds).CredentialDescriptors()),
		func(o *protocol.PublicKeyCredentialCreationOptions) error {
			o.Challenge = challenge
			return nil
		})
	if err != nil {
		return nil, nil, fmt.Errorf("passkey: registration options: %w", err)
	}
	session.Challenge = protocol.URLEncodedBase64(challenge).String()
	return creation, session, nil
}

// EnrolOptions returns the JSON of the creation options
// (PublicKeyCredentialCreationOptions) for an enrolment of the user
// through token, excluding the passkeys they have.
func (rp *RP) EnrolOptions(subject, name, token string, have []Credential) ([]byte, error) {
	creation, _, err := rp.beginEnrol(newUser(subject, name, have), token)
	if err != nil {
		return nil, err
	}
	return json.Marshal(creation.Response)
}

// FinishEnrol verifies the browser's answer (the JSON of the
// PublicKeyCredential) to EnrolOptions and returns the new credential;
// ErrRefused if it does not verify, user verification included.
func (rp *RP) FinishEnrol(subject, name, token string, have []Credential, body []byte) (*webauthn.Credential, error) {
	u := newUser(subject, name, have)
	_, session, err := rp.beginEnrol(u, token)
	if err != nil {
		return nil, err
	}
	parsed, err := protocol.ParseCredentialCreationResponseBytes(body)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	c, err := rp.w.CreateCredential(u, *session, parsed)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	return c, nil
}

// beginAssert is the request options and session of an assertion with the
// given challenge.
func (rp *RP) beginAssert(u *user, challenge []byte) (*protocol.CredentialAssertion, *webauthn.SessionData, error) {
	a, s, err := rp.w.BeginLogin(u, webauthn.WithChallenge(challenge), webauthn.WithUserVerification(protocol.VerificationRequired))
	if err != nil {
		return nil, nil, fmt.Errorf("passkey: assertion options: %w", err)
	}
	return a, s, nil
}

// AssertOptions returns the JSON of the request options
// (PublicKeyCredentialRequestOptions) that ask for an assertion by one of
// the user's passkeys over challenge (Challenge: the request's).
func (rp *RP) AssertOptions(subject, name string, have []Credential, challenge []byte) ([]byte, error) {
	a, _, err := rp.beginAssert(newUser(subject, name, have), challenge)
	if err != nil {
		return nil, err
	}
	return json.Marshal(a.Response)
}

// FinishAssert verifies an assertion (the JSON of the PublicKeyCredential)
// over challenge by one of the user's passkeys: signature, origin, rp id,
// user verification, and a sign count that went forward (the library's
// checks). It returns the credential with its new sign count, for
// Credentials.Used; ErrRefused if anything does not verify.
func (rp *RP) FinishAssert(subject, name string, have []Credential, challenge, body []byte) (*webauthn.Credential, error) {
	u := newUser(subject, name, have)
	_, session, err := rp.beginAssert(u, challenge)
	if err != nil {
		return nil, err
	}
	parsed, err := protocol.ParseCredentialRequestResponseBytes(body)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	c, err := rp.w.ValidateLogin(u, *session, parsed)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	if c.Authenticator.CloneWarning {
		return nil, fmt.Errorf("%w: the sign count did not go forward (a cloned authenticator?)", ErrRefused)
	}
	return c, nil
}

// Account is a user as a discoverable assertion finds them.
type Account struct {
	Subject, Name string
	Creds         []Credential
}

// DiscoverOptions returns the JSON of request options over challenge that
// name no user: the authenticator offers its discoverable passkeys for
// this relying party (the device page, where the user is not known yet).
func (rp *RP) DiscoverOptions(challenge []byte) ([]byte, error) {
	a, _, err := rp.w.BeginDiscoverableLogin(webauthn.WithChallenge(challenge), webauthn.WithUserVerification(protocol.VerificationRequired))
	if err != nil {
		return nil, fmt.Errorf("passkey: assertion options: %w", err)
	}
	return json.Marshal(a.Response)
}

// FinishDiscover verifies a discoverable assertion over challenge, with
// the checks of FinishAssert, for the account lookup finds by the user
// handle the authenticator returned; it returns that account and the
// credential with its new sign count.
func (rp *RP) FinishDiscover(lookup func(handle []byte) (Account, error), challenge, body []byte) (Account, *webauthn.Credential, error) {
	_, session, err := rp.w.BeginDiscoverableLogin(webauthn.WithChallenge(challenge), webauthn.WithUserVerification(protocol.VerificationRequired))
	if err != nil {
		return Account{}, nil, fmt.Errorf("passkey: assertion options: %w", err)
	}
	parsed, err := protocol.ParseCredentialRequestResponseBytes(body)
	if err != nil {
		return Account{}, nil, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	var acct Account
	_, c, err := rp.w.ValidatePasskeyLogin(func(_, handle []byte) (webauthn.User, error) {
		a, err := lookup(handle)
		if err != nil {
			return nil, err
		}
		acct = a
		return newUser(a.Subject, a.Name, a.Creds), nil
	}, *session, parsed)
	if err != nil {
		return Account{}, nil, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	if c.Authenticator.CloneWarning {
		return Account{}, nil, fmt.Errorf("%w: the sign count did not go forward (a cloned authenticator?)", ErrRefused)
	}
	return acct, c, nil
}

// hashString is the hex SHA-256 of s.
func hashString(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
