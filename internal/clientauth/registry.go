package clientauth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"golang.org/x/crypto/bcrypt"

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

	// Guard limits failed authentications per client address and bounds
	// the bcrypt checks run at once (see Guard); nil limits nothing. Give
	// every registry of a Live the same Guard. Set it before the first
	// Authenticate; do not change it afterwards.
	Guard *Guard

	byID  map[string]*Registration
	ids   []string
	decoy [sha256.Size]byte
	// hashDecoy is a bcrypt hash of a random secret at the highest cost of
	// the registered hashes, checked for an unknown client and a wrong
	// plain secret so that every failure costs what a wrong hashed
	// secret does; nil when no client has a hashed secret.
	hashDecoy *secret
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
	d, err := newHashDecoy(regs)
	if err != nil {
		return nil, err
	}
	r.hashDecoy = d
	return r, nil
}

// newHashDecoy returns the decoy of regs: a bcrypt hash of random bytes at
// the highest cost of their hashed secrets; nil when none has one.
func newHashDecoy(regs []*Registration) (*secret, error) {
	maxCost := 0
	for _, reg := range regs {
		if reg.secret.kind == secretBcrypt {
			if c, err := bcrypt.Cost(reg.secret.hash); err == nil && c > maxCost {
				maxCost = c
			}
		}
	}
	if maxCost == 0 {
		return nil, nil
	}
	random := make([]byte, 32)
	_, _ = rand.Read(random)
	// Only the cost matters: the decoy is never matched.
	h, err := bcrypt.GenerateFromPassword(random, maxCost)
	if err != nil {
		return nil, fmt.Errorf("clientauth: decoy hash: %w", err)
	}
	return &secret{kind: secretBcrypt, hash: h, compare: bcrypt.CompareHashAndPassword}, nil
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
//
// With a Guard, a failure is counted against the address of the request;
// once a failure has found the address's failures used up, the client_id
// it named is refused from that address before anything is checked
// (*LimitError: 429, slow_down, with Retry-After) until a token is back;
// and bcrypt checks wait for a slot (*LimitError: 503,
// temporarily_unavailable, when none comes free in time). A request with
// no credentials at all is not counted. Every failed secret check costs
// the same, whoever the client:
// when some client has a hashed secret, an unknown client and a wrong
// plain secret get a bcrypt check of a decoy at the highest registered
// cost; when none has, no failure runs bcrypt.
func (r *Registry) Authenticate(ctx context.Context, req *http.Request, form url.Values, endpoint string) (*Registration, error) {
	at := &attempt{g: r.Guard, req: req}
	reg, counted, err := r.authenticate(ctx, req, form, endpoint, at)
	if err != nil && !counted && isFailure(err) {
		err = r.Guard.charge(ctx, at, err)
	}
	return reg, err
}

// authenticate is Authenticate; it records in at the client_id the
// request names, and has the Guard admit it before checking anything.
// counted reports that a failure was counted already, or must not be.
func (r *Registry) authenticate(ctx context.Context, req *http.Request, form url.Values, endpoint string, at *attempt) (reg *Registration, counted bool, err error) {
	authz := req.Header.Values("Authorization")
	if len(authz) > 1 {
		return nil, false, ciba.Errorf(ciba.CodeInvalidRequest, "the Authorization header is repeated")
	}
	basic := len(authz) == 1 && len(authz[0]) >= 6 && strings.EqualFold(authz[0][:6], "Basic ")
	post := form.Has("client_secret")
	assertion := form.Has("client_assertion") || form.Has("client_assertion_type")
	switch n := btoi(basic) + btoi(post) + btoi(assertion); {
	case n > 1:
		return nil, false, ciba.Errorf(ciba.CodeInvalidRequest, "multiple client authentication methods (RFC 6749 §2.3)")
	case n == 0:
		cert, intermediates, err := r.MTLS.ClientCertificate(req)
		if err != nil {
			return nil, false, err
		}
		if cert != nil {
			if err := r.Guard.admit(at.named(form.Get("client_id"))); err != nil {
				return nil, true, err
			}
			reg, err := r.mtlsAuth(ctx, form, cert, intermediates)
			return reg, false, err
		}
		// Not a failure the limit counts (counted is true): some HTTP
		// clients send credentials only once challenged (RFC 9110 §11.6.1).
		return nil, true, invalidClient(true, "client authentication is required (%s, %s, %s or a client certificate)", MethodSecretBasic, MethodSecretPost, MethodPrivateKeyJWT)
	}
	switch {
	case basic:
		id, secret, ok := basicCredentials(req)
		if !ok {
			if err := r.Guard.admit(at); err != nil {
				return nil, true, err
			}
			return nil, false, invalidClient(true, "malformed Basic credentials (RFC 6749 §2.3.1)")
		}
		return r.secretAuth(ctx, at.named(id), secret, MethodSecretBasic, form)
	case post:
		id := form.Get("client_id")
		if id == "" {
			return nil, false, ciba.Errorf(ciba.CodeInvalidRequest, "client_id is required with client_secret")
		}
		return r.secretAuth(ctx, at.named(id), form.Get("client_secret"), MethodSecretPost, form)
	default:
		return r.assertionAuth(ctx, form, endpoint, at)
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

// secretAuth authenticates client at.id by its secret with method. A
// plain secret, and a hashed one whose digest was verified already, are
// checked without bcrypt or the failure limit. Any other check reserves
// a failure token first and runs a bcrypt check in a slot of the Guard: of
// the client's hash, or of the decoy for an unknown client or a wrong
// plain secret when some client has a hashed secret. counted reports that
// a failure was counted already.
func (r *Registry) secretAuth(ctx context.Context, at *attempt, presented, method string, form url.Values) (reg *Registration, counted bool, err error) {
	basic, id := method == MethodSecretBasic, at.id
	if err := checkFormID(form, id); err != nil {
		return nil, false, err
	}
	if err := r.Guard.admit(at); err != nil {
		return nil, true, err
	}
	reg = r.byID[id]
	var hashed *secret // the bcrypt check to run: the client's, or the decoy
	switch ok, final := reg.quickCheck(presented); {
	case ok:
		return r.allowed(reg, method, basic)
	case reg != nil && !final:
		hashed = &reg.secret
	case r.hashDecoy != nil:
		hashed = r.hashDecoy
	default:
		if reg == nil {
			// The cost of a plain secret's check, so timing does not tell
			// unknown clients from plain-secret ones.
			d := sha256.Sum256([]byte(presented))
			subtle.ConstantTimeCompare(d[:], r.decoy[:])
		}
		return nil, false, invalidClient(basic, genericFailure)
	}
	settle, err := r.Guard.reserve(ctx, at)
	if err != nil {
		return nil, true, err
	}
	ok := false
	if err := r.Guard.hash(ctx, func() { ok = hashed.verify(presented) && hashed != r.hashDecoy }); err != nil {
		settle(false)
		return nil, true, err
	}
	settle(!ok)
	if !ok {
		return nil, true, invalidClient(basic, genericFailure)
	}
	return r.allowed(reg, method, basic)
}

// allowed returns reg if it may use method, which it proved its secret for.
func (r *Registry) allowed(reg *Registration, method string, basic bool) (*Registration, bool, error) {
	if !reg.Allows(method) {
		return nil, false, invalidClient(basic, "client %q is not registered for %s", reg.ID(), method)
	}
	return reg, false, nil
}

// assertionAuth authenticates a client by a client assertion
// (private_key_jwt, RFC 7523 §2.2 and §3).
func (r *Registry) assertionAuth(ctx context.Context, form url.Values, endpoint string, at *attempt) (_ *Registration, counted bool, err error) {
	typ, raw := form.Get("client_assertion_type"), form.Get("client_assertion")
	switch {
	case typ == "":
		return nil, false, ciba.Errorf(ciba.CodeInvalidRequest, "client_assertion_type is missing")
	case raw == "":
		return nil, false, ciba.Errorf(ciba.CodeInvalidRequest, "client_assertion is missing")
	}
	id, err := jose.AssertionSubject(raw)
	if err := r.Guard.admit(at.named(id)); err != nil { // id is "" when err is set
		return nil, true, err
	}
	if typ != jose.ClientAssertionType {
		return nil, false, invalidClient(false, "client_assertion_type %q is not supported (want %s)", clip(typ), jose.ClientAssertionType)
	}
	if err != nil {
		return nil, false, asAuthError(tokenError(err))
	}
	reg, err := r.verifyAssertion(ctx, form, endpoint, raw, id)
	return reg, false, err
}

// verifyAssertion verifies the client assertion raw of client id
// (AssertionSubject) at endpoint.
func (r *Registry) verifyAssertion(ctx context.Context, form url.Values, endpoint, raw, id string) (*Registration, error) {
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
		return nil, asAuthError(tokenError(err))
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
