// Package clientauth authenticates the clients of cibaproxy's backchannel
// authentication and token endpoints (RFC 6749 §2.3, OIDC Core §9, CIBA
// §7.1) and knows, per client, how its signed requests are verified.
//
// Five methods are supported: client_secret_basic, client_secret_post,
// private_key_jwt (RFC 7523), and the mutual-TLS tls_client_auth and
// self_signed_tls_client_auth (RFC 8705, see MTLS). Authentication is on the poll hot path, so it
// does no password-hash work per request: a plain secret is compared as a
// SHA-256 digest in constant time, and a bcrypt-hashed secret is checked
// with bcrypt once, after which the digest of the verified secret is
// compared the same way.
package clientauth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"

	gojose "github.com/go-jose/go-jose/v4"
	"golang.org/x/crypto/bcrypt"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/jose"
)

// Client authentication methods (OIDC Core §9, RFC 8414 §2
// token_endpoint_auth_methods_supported).
const (
	MethodSecretBasic   = "client_secret_basic"
	MethodSecretPost    = "client_secret_post"
	MethodPrivateKeyJWT = "private_key_jwt"
)

// Options describe a registered client, as the configuration gives it.
type Options struct {
	// Client is what the CIBA domain knows of the client; Client.ID is the
	// client_id.
	Client ciba.Client
	// Secret is the client secret in plain text. Set at most one of Secret
	// and SecretHash.
	Secret string
	// SecretHash is the bcrypt hash of the client secret.
	SecretHash string
	// Methods are the token_endpoint_auth_method values the client may use
	// (OIDC Registration §2). Empty means client_secret_basic if the client
	// has a secret, plus private_key_jwt if it has keys.
	Methods []string
	// JWKS holds the client's public keys (RFC 7591 "jwks"). Set at most
	// one of JWKS and JWKSURI.
	JWKS gojose.JSONWebKeySet
	// JWKSURI is where the client publishes its public keys (RFC 7591
	// "jwks_uri"); https, or http on a loopback address.
	JWKSURI string
	// RequestObjectAlg is backchannel_authentication_request_signing_alg
	// (CIBA §4): when set, the client must send signed authentication
	// requests, signed with this algorithm.
	RequestObjectAlg string
	// AllowHS256RequestObject is the legacy switch that accepts request
	// objects MACed with HS256 using the plain Secret (at least 32 bytes)
	// as the key. CIBA §7.1.1 requires asymmetric signatures: never set it
	// under FAPI.
	AllowHS256RequestObject bool
	// TLSClientAuth is the certificate subject of a tls_client_auth
	// client (RFC 8705 §2.1.2); required with that method. A
	// self_signed_tls_client_auth client's certificates are those of JWKS,
	// or those published at JWKSURI, fetched again when a certificate
	// matches none of the cached ones (RFC 8705 §2.2).
	TLSClientAuth TLSClientAuth
	// FAPI puts the client under the FAPI-CIBA profile (see fapi.go):
	// NewRegistration refuses options the profile forbids, and request
	// objects and client assertions are held to its rules.
	FAPI bool
}

// Registration is one registered client, ready to authenticate. It is
// immutable after NewRegistration, except for its cache of a verified
// secret digest, and safe for concurrent use.
type Registration struct {
	client        ciba.Client
	methods       []string
	keySet        jose.KeySet // nil if none
	roAlgs        []string
	requireSigned bool
	allowHS256    bool
	hs256Secret   string
	secret        secret
	fapi          bool
	tlsAuth       TLSClientAuth
	certKeys      []gojose.JSONWebKey // self_signed_tls_client_auth, from jwks
	certURI       *jose.RemoteKeySet  // self_signed_tls_client_auth, from jwks_uri
}

// NewRegistration checks opts and returns the registration. ctx configures
// the fetching of the client's jwks_uri (see jose.NewRemoteKeySet).
func NewRegistration(ctx context.Context, opts Options) (*Registration, error) {
	id := opts.Client.ID
	if id == "" {
		return nil, errors.New("clientauth: a client needs an id")
	}
	if strings.IndexFunc(id, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 {
		return nil, fmt.Errorf("clientauth: client id %q has control characters", id)
	}
	fail := func(format string, args ...any) error {
		return fmt.Errorf("clientauth: client %q: %s", id, fmt.Sprintf(format, args...))
	}
	r := &Registration{client: opts.Client}
	r.client.Scopes = slices.Clone(opts.Client.Scopes)

	switch {
	case opts.Secret != "" && opts.SecretHash != "":
		return nil, fail("set either secret or secret hash, not both")
	case opts.Secret != "":
		r.secret = secret{kind: secretPlain, digest: sha256.Sum256([]byte(opts.Secret))}
	case opts.SecretHash != "":
		if _, err := bcrypt.Cost([]byte(opts.SecretHash)); err != nil {
			return nil, fail("the secret hash is not a bcrypt hash: %v", err)
		}
		r.secret = secret{kind: secretBcrypt, hash: []byte(opts.SecretHash), compare: bcrypt.CompareHashAndPassword}
	}

	switch {
	case len(opts.JWKS.Keys) > 0 && opts.JWKSURI != "":
		return nil, fail("set either jwks or jwks_uri, not both (RFC 7591 §2)")
	case len(opts.JWKS.Keys) > 0:
		ks, err := jose.NewStaticKeySet(opts.JWKS)
		if err != nil {
			return nil, fail("jwks: %v", err)
		}
		r.keySet = ks
	case opts.JWKSURI != "":
		if err := checkJWKSURI(opts.JWKSURI); err != nil {
			return nil, fail("jwks_uri: %v", err)
		}
		r.keySet = jose.NewRemoteKeySet(ctx, opts.JWKSURI)
	}

	r.methods = slices.Clone(opts.Methods)
	if len(r.methods) == 0 {
		if r.secret.kind != secretNone {
			r.methods = append(r.methods, MethodSecretBasic)
		}
		if r.keySet != nil {
			r.methods = append(r.methods, MethodPrivateKeyJWT)
		}
		if len(r.methods) == 0 {
			return nil, fail("no secret and no keys: the client cannot authenticate")
		}
	}
	for _, m := range r.methods {
		switch m {
		case MethodSecretBasic, MethodSecretPost:
			if r.secret.kind == secretNone {
				return nil, fail("%s needs a secret or secret hash", m)
			}
		case MethodPrivateKeyJWT:
			if r.keySet == nil {
				return nil, fail("%s needs jwks or jwks_uri", m)
			}
		case MethodTLSClientAuth:
			if err := opts.TLSClientAuth.check(); err != nil {
				return nil, fail("%v", err)
			}
			r.tlsAuth = opts.TLSClientAuth
		case MethodSelfSignedTLSClientAuth:
			// RFC 8705 §2.2: the certificate (or its public key) is
			// registered in jwks or published at jwks_uri.
			switch ks := r.keySet.(type) {
			case *jose.RemoteKeySet:
				r.certURI = ks
			default:
				if len(opts.JWKS.Keys) == 0 {
					return nil, fail("%s needs the certificate in jwks or at jwks_uri (RFC 8705 §2.2)", m)
				}
				r.certKeys = slices.Clone(opts.JWKS.Keys)
			}
		default:
			return nil, fail("unsupported authentication method %q (supported: %s, %s, %s, %s, %s)", m, MethodSecretBasic, MethodSecretPost, MethodPrivateKeyJWT, MethodTLSClientAuth, MethodSelfSignedTLSClientAuth)
		}
	}

	if opts.AllowHS256RequestObject {
		if opts.Secret == "" {
			return nil, fail("HS256 request objects need the plain secret, not a hash")
		}
		if len(opts.Secret) < jose.MinHS256SecretLen {
			return nil, fail("HS256 request objects need a secret of at least %d bytes", jose.MinHS256SecretLen)
		}
		r.allowHS256, r.hs256Secret = true, opts.Secret
	}
	switch alg := opts.RequestObjectAlg; {
	case alg == "":
		r.roAlgs = jose.DefaultAlgs()
		if r.allowHS256 {
			r.roAlgs = append(r.roAlgs, "HS256")
		}
	case alg == "HS256":
		if !r.allowHS256 {
			return nil, fail("request object alg HS256 needs the legacy switch (CIBA §7.1.1 asks for an asymmetric alg)")
		}
		r.roAlgs, r.requireSigned = []string{alg}, true
	case isAsymmetricAlg(alg):
		if r.keySet == nil {
			return nil, fail("request object alg %s needs jwks or jwks_uri", alg)
		}
		r.roAlgs, r.requireSigned = []string{alg}, true
	default:
		return nil, fail("unsupported request object alg %q", alg)
	}
	if opts.FAPI {
		if err := checkFAPI(opts); err != nil {
			return nil, fmt.Errorf("clientauth: client %q: %w", id, err)
		}
		r.fapi = true
		// FAPI-CIBA: the server ensures the user can tell the requests
		// apart, here by requiring a binding_message.
		r.client.RequireBindingMessage = true
	}
	return r, nil
}

// isAsymmetricAlg reports whether a client may register alg for its
// request objects.
func isAsymmetricAlg(alg string) bool {
	switch alg {
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512":
		return true
	}
	return false
}

// checkJWKSURI accepts https URLs, and http ones on a loopback address
// (for tests and sidecars).
func checkJWKSURI(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	switch {
	case u.Host == "":
		return errors.New("not an absolute URL")
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http":
		host := u.Hostname()
		if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
			return nil
		}
		return errors.New("http is allowed on loopback addresses only; use https")
	default:
		return fmt.Errorf("scheme %q; use https", u.Scheme)
	}
}

// Client is the client as the CIBA domain knows it. Callers must not
// modify it.
func (r *Registration) Client() *ciba.Client { return &r.client }

// ID is the client_id.
func (r *Registration) ID() string { return r.client.ID }

// Methods are the authentication methods the client may use.
func (r *Registration) Methods() []string { return slices.Clone(r.methods) }

// Allows reports whether the client may authenticate with method.
func (r *Registration) Allows(method string) bool { return slices.Contains(r.methods, method) }

// KeySet verifies the client's signatures; nil if it registered no keys.
func (r *Registration) KeySet() jose.KeySet { return r.keySet }

// RequestObjectAlgs are the algorithms the client's request objects may be
// signed with: its registered alg, or the defaults (RS256, PS256, ES256,
// and HS256 with the legacy switch).
func (r *Registration) RequestObjectAlgs() []string { return slices.Clone(r.roAlgs) }

// RequiresSignedRequest reports whether the client must send its
// authentication requests as signed request objects (it registered
// backchannel_authentication_request_signing_alg, CIBA §4).
func (r *Registration) RequiresSignedRequest() bool { return r.requireSigned }

// AllowsHS256RequestObject reports whether the legacy HS256 switch is on.
func (r *Registration) AllowsHS256RequestObject() bool { return r.allowHS256 }

// RequestObjectSecret is the plain client secret, for verifying HS256
// request objects only; "" unless the legacy switch is on. Never log it.
func (r *Registration) RequestObjectSecret() string { return r.hs256Secret }

// RequestObjectPolicy returns base completed with the client's fields:
// ClientID, Algs, AllowHS256, KeySet and Secret. base carries the
// server-wide ones (Issuer, Audiences, Replay, Now, ClockSkew, MaxSize,
// MaxLifetime). A FAPI client gets MaxLifetime at most FAPIMaxLifetime.
func (r *Registration) RequestObjectPolicy(base jose.RequestObjectPolicy) jose.RequestObjectPolicy {
	p := base
	p.ClientID = r.client.ID
	p.Algs = r.RequestObjectAlgs()
	p.AllowHS256 = r.allowHS256
	p.KeySet = r.keySet
	p.Secret = r.hs256Secret
	r.applyFAPI(&p)
	return p
}

// Kinds of stored secret.
const (
	secretNone = iota
	secretPlain
	secretBcrypt
)

// secret checks a presented client secret without per-request hashing
// work once the secret has been verified.
type secret struct {
	kind int
	// digest is SHA-256 of the plain secret.
	digest [sha256.Size]byte
	// hash is the bcrypt hash; verified caches SHA-256 of the last secret
	// bcrypt accepted.
	hash     []byte
	verified atomic.Pointer[[sha256.Size]byte]
	// compare is bcrypt.CompareHashAndPassword (replaced in tests to count).
	compare func(hash, password []byte) error
}

// quickCheck checks presented against the secret of reg without bcrypt:
// ok when it is the secret (a plain one, or a hashed one whose digest was
// verified already); final when no bcrypt check could change the answer
// (a plain secret, no secret, or no registration: reg may be nil).
func (reg *Registration) quickCheck(presented string) (ok, final bool) {
	if reg == nil {
		return false, true
	}
	s := &reg.secret
	d := sha256.Sum256([]byte(presented))
	switch s.kind {
	case secretPlain:
		return subtle.ConstantTimeCompare(d[:], s.digest[:]) == 1, true
	case secretBcrypt:
		if v := s.verified.Load(); v != nil && subtle.ConstantTimeCompare(d[:], v[:]) == 1 {
			return true, true
		}
		return false, false
	}
	return false, true
}

// verify checks presented against a bcrypt secret, and caches its digest
// when it matches so that the next checks need no bcrypt.
func (s *secret) verify(presented string) bool {
	if s.kind != secretBcrypt || s.compare(s.hash, []byte(presented)) != nil {
		return false
	}
	d := sha256.Sum256([]byte(presented))
	s.verified.Store(&d)
	return true
}
