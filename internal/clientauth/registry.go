package clientauth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/jose"
)

// Realm is the realm of the Basic challenge (RFC 7617 §2).
const Realm = "cibaproxy"

// AuthError is a failed client authentication: invalid_client, answered
// with 401 (RFC 6749 §5.2). errors.As finds both the AuthError and the
// *ciba.Error inside it. Basic is set when the client tried HTTP Basic, or
// sent no credentials at all; the HTTP layer then answers with the
// challenge WWW-Authenticate: Basic realm="cibaproxy" (RFC 6749 §5.2, RFC
// 9110 §15.5.2).
type AuthError struct {
	Err   *ciba.Error
	Basic bool
}

// Error implements error.
func (e *AuthError) Error() string { return e.Err.Error() }

// Unwrap returns the protocol error.
func (e *AuthError) Unwrap() error { return e.Err }

// Challenge is the WWW-Authenticate value to answer with, or "".
func (e *AuthError) Challenge() string {
	if e.Basic {
		return `Basic realm="` + Realm + `"`
	}
	return ""
}

// WWWAuthenticate returns the WWW-Authenticate value the response to err
// must carry, or "" for none.
func WWWAuthenticate(err error) string {
	var e *AuthError
	if errors.As(err, &e) {
		return e.Challenge()
	}
	return ""
}

// genericFailure is the description of every failure that must not tell
// whether the client exists: unknown client_id, wrong secret, no keys.
const genericFailure = "client authentication failed"

func invalidClient(basic bool, format string, args ...any) *AuthError {
	return &AuthError{
		Err:   &ciba.Error{Code: ciba.CodeInvalidClient, Status: http.StatusUnauthorized, Description: fmt.Sprintf(format, args...)},
		Basic: basic,
	}
}

// Registry holds the registered clients and authenticates requests.
type Registry struct {
	// AssertionPolicy is the template of the private_key_jwt checks: set
	// Issuer (the aud CIBA §7.1 allows at every endpoint), Replay
	// (required for private_key_jwt), and optionally Now, ClockSkew,
	// MaxSize and Algs. ClientID, Endpoint and KeySet are filled per
	// request. Set it before the first Authenticate; do not change it
	// afterwards.
	AssertionPolicy jose.AssertionPolicy

	// MTLS says where client certificates come from (RFC 8705). The zero
	// value accepts certificates presented on TLS for
	// self_signed_tls_client_auth only. Set it before the first
	// Authenticate; do not change it afterwards.
	MTLS MTLS

	byID  map[string]*Registration
	ids   []string
	decoy [sha256.Size]byte
}

// NewRegistry returns a registry of regs; a client_id registered twice is
// an error.
func NewRegistry(regs ...*Registration) (*Registry, error) {
	r := &Registry{byID: make(map[string]*Registration, len(regs))}
	for _, reg := range regs {
		if reg == nil {
			return nil, errors.New("clientauth: nil registration")
		}
		if _, dup := r.byID[reg.ID()]; dup {
			return nil, fmt.Errorf("clientauth: client %q is registered twice", reg.ID())
		}
		r.byID[reg.ID()] = reg
		r.ids = append(r.ids, reg.ID())
	}
	slices.Sort(r.ids)
	return r, nil
}

// Lookup returns the registration of client id.
func (r *Registry) Lookup(id string) (*Registration, bool) {
	reg, ok := r.byID[id]
	return reg, ok
}

// IDs returns the registered client_ids, sorted.
func (r *Registry) IDs() []string { return slices.Clone(r.ids) }

// Authenticate authenticates the client of an HTTP request to endpoint, the
// absolute URL being called (it is an acceptable aud of a client
// assertion). form is the request's parsed form body.
//
// The client must use exactly one method (RFC 6749 §2.3): an Authorization
// Basic header with the form-urlencoded client_id and secret (RFC 6749
// §2.3.1), client_id and client_secret in the form, or a client assertion
// (client_assertion_type urn:ietf:params:oauth:client-assertion-type:jwt-bearer
// and client_assertion, RFC 7523 §2.2), or, with none of these, the client
// certificate of the request with client_id in the form (tls_client_auth or
// self_signed_tls_client_auth, RFC 8705 §2; see MTLS); a client_id in the
// form must be the authenticated one.
//
// Errors: invalid_request (400) for several methods at once, a missing
// parameter or a client_id that disagrees; *AuthError (invalid_client, 401)
// for anything else. An unknown client, a wrong secret and a client without
// keys get the same description, so failures do not tell which client_ids
// exist; "not registered for <method>" is said only to a client that proved
// its credentials. A client assertion's own defects (aud, exp, …) are
// described precisely. A replay check that cannot be made is
// temporarily_unavailable.
func (r *Registry) Authenticate(ctx context.Context, req *http.Request, form url.Values, endpoint string) (*Registration, error) {
	authz := req.Header.Values("Authorization")
	if len(authz) > 1 {
		return nil, ciba.Errorf(ciba.CodeInvalidRequest, "the Authorization header is repeated")
	}
	basic := len(authz) == 1 && len(authz[0]) >= 6 && strings.EqualFold(authz[0][:6], "Basic ")
	post := form.Has("client_secret")
	assertion := form.Has("client_assertion") || form.Has("client_assertion_type")
	switch n := btoi(basic) + btoi(post) + btoi(assertion); {
	case n > 1:
		return nil, ciba.Errorf(ciba.CodeInvalidRequest, "multiple client authentication methods (RFC 6749 §2.3)")
	case n == 0:
		cert, intermediates, err := r.MTLS.ClientCertificate(req)
		if err != nil {
			return nil, err
		}
		if cert != nil {
			return r.mtlsAuth(ctx, form, cert, intermediates)
		}
		return nil, invalidClient(true, "client authentication is required (%s, %s, %s or a client certificate)", MethodSecretBasic, MethodSecretPost, MethodPrivateKeyJWT)
	}
	switch {
	case basic:
		id, secret, ok := basicCredentials(req)
		if !ok {
			return nil, invalidClient(true, "malformed Basic credentials (RFC 6749 §2.3.1)")
		}
		return r.secretAuth(id, secret, MethodSecretBasic, form)
	case post:
		id := form.Get("client_id")
		if id == "" {
			return nil, ciba.Errorf(ciba.CodeInvalidRequest, "client_id is required with client_secret")
		}
		return r.secretAuth(id, form.Get("client_secret"), MethodSecretPost, form)
	default:
		return r.assertionAuth(ctx, form, endpoint)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// basicCredentials decodes HTTP Basic credentials whose parts are
// form-urlencoded (RFC 6749 §2.3.1, RFC 7617).
func basicCredentials(req *http.Request) (id, secret string, ok bool) {
	rawID, rawSecret, ok := req.BasicAuth()
	if !ok {
		return "", "", false
	}
	id, err := url.QueryUnescape(rawID)
	if err != nil || id == "" {
		return "", "", false
	}
	secret, err = url.QueryUnescape(rawSecret)
	if err != nil {
		return "", "", false
	}
	return id, secret, true
}

// checkFormID checks that a client_id in the form is the authenticated one.
func checkFormID(form url.Values, id string) error {
	if form.Has("client_id") && form.Get("client_id") != id {
		return ciba.Errorf(ciba.CodeInvalidRequest, "client_id %q in the form is not the authenticated client", clip(form.Get("client_id")))
	}
	return nil
}

// secretAuth authenticates client id by its secret with method.
func (r *Registry) secretAuth(id, presented, method string, form url.Values) (*Registration, error) {
	basic := method == MethodSecretBasic
	if err := checkFormID(form, id); err != nil {
		return nil, err
	}
	reg := r.byID[id]
	if reg == nil {
		// The cost of a plain secret's check, so timing does not tell
		// unknown clients from plain-secret ones.
		d := sha256.Sum256([]byte(presented))
		subtle.ConstantTimeCompare(d[:], r.decoy[:])
		return nil, invalidClient(basic, genericFailure)
	}
	if !reg.secret.check(presented) {
		return nil, invalidClient(basic, genericFailure)
	}
	if !reg.Allows(method) {
		return nil, invalidClient(basic, "client %q is not registered for %s", id, method)
	}
	return reg, nil
}

// assertionAuth authenticates a client by a client assertion
// (private_key_jwt, RFC 7523 §2.2 and §3).
func (r *Registry) assertionAuth(ctx context.Context, form url.Values, endpoint string) (*Registration, error) {
	typ, raw := form.Get("client_assertion_type"), form.Get("client_assertion")
	switch {
	case typ == "":
		return nil, ciba.Errorf(ciba.CodeInvalidRequest, "client_assertion_type is missing")
	case raw == "":
		return nil, ciba.Errorf(ciba.CodeInvalidRequest, "client_assertion is missing")
	case typ != jose.ClientAssertionType:
		return nil, invalidClient(false, "client_assertion_type %q is not supported (want %s)", clip(typ), jose.ClientAssertionType)
	}
	id, err := jose.AssertionSubject(raw)
	if err != nil {
		return nil, asAuthError(err)
	}
	if err := checkFormID(form, id); err != nil {
		return nil, err
	}
	reg := r.byID[id]
	var ks jose.KeySet = noKeys{}
	if reg != nil && reg.keySet != nil {
		ks = reg.keySet
	}
	p := r.AssertionPolicy
	p.ClientID, p.Endpoint, p.KeySet = id, endpoint, ks
	reg.applyFAPIAssertion(&p) // PS256 and ES256 only for a FAPI client
	if err := jose.VerifyClientAssertion(ctx, raw, p); err != nil {
		return nil, asAuthError(err)
	}
	if reg == nil || reg.keySet == nil {
		return nil, invalidClient(false, genericFailure) // unreachable: noKeys verifies nothing
	}
	if !reg.Allows(MethodPrivateKeyJWT) {
		return nil, invalidClient(false, "client %q is not registered for %s", id, MethodPrivateKeyJWT)
	}
	return reg, nil
}

// noKeys stands in for the keys of an unknown client, or of a client
// without keys: it verifies nothing. VerifyClientAssertion describes every
// signature failure alike, so unknown clients are not told apart from known
// ones by the answer.
type noKeys struct{}

func (noKeys) Verify(context.Context, string) ([]byte, error) {
	return nil, fmt.Errorf("%w: no keys", jose.ErrUnknownKey)
}

// asAuthError wraps an invalid_client protocol error into an AuthError;
// other errors (temporarily_unavailable, server_error) are returned as they
// are.
func asAuthError(err error) error {
	var e *ciba.Error
	if errors.As(err, &e) && e.Code == ciba.CodeInvalidClient {
		e.Status = http.StatusUnauthorized
		return &AuthError{Err: e}
	}
	return err
}

// clip shortens a value the client sent for an error description.
func clip(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	return strings.ToValidUTF8(s[:max], "") + "…"
}
