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
	"slices"
	"sync/atomic"

	gojose "github.com/go-jose/go-jose/v4"
	"golang.org/x/crypto/bcrypt"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/clientmeta"
	"github.com/cibaproxy/cibaproxy/internal/jose"
)

// Client authentication methods (OIDC Core §9, RFC 8414 §2
// token_endpoint_auth_methods_supported).
const (
	MethodSecretBasic   = clientmeta.MethodSecretBasic
	MethodSecretPost    = clientmeta.MethodSecretPost
	MethodPrivateKeyJWT = clientmeta.MethodPrivateKeyJWT
)

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

// NewRegistration builds the registration of a client whose metadata
// passed clientmeta.Check: the metadata rules are not checked again. ctx
// configures the fetching of the client's jwks_uri (see
// jose.NewRemoteKeySet). It fails only for a nil or public client (public
// clients use the device grant and are not registered here), or when a key
// of the client's jwks cannot verify signatures (jose.NewStaticKeySet).
func NewRegistration(ctx context.Context, v *clientmeta.Valid) (*Registration, error) {
	if v == nil {
		return nil, errors.New("clientauth: the client was not checked (clientmeta.Check)")
	}
	if v.IsPublic() {
		return nil, fmt.Errorf("clientauth: client %q is public (method none): it has no credentials to authenticate with", v.ID())
	}
	m := v.Metadata()
	r := &Registration{
		client: ciba.Client{
			ID:                    m.ID,
			Name:                  m.Name,
			Mode:                  ciba.DeliveryMode(m.DeliveryMode),
			NotificationEndpoint:  m.NotificationEndpoint,
			RequireUserCode:       m.UserCodeParameter,
			Scopes:                m.Scopes,
			SkipValidation:        m.SkipValidation,
			CertBoundAccessTokens: m.CertBoundAccessTokens,
			DPoPBoundAccessTokens: m.DPoPBoundAccessTokens,
			AuthzDetailsTypes:     m.AuthzDetailsTypes,
			Introspection:         m.Introspection,
			ActsForUser:           m.ActsForUser,
			Resources:             m.Resources,
		},
		methods: m.Methods,
		tlsAuth: TLSClientAuth{SubjectDN: m.TLSSubjectDN, SANDNS: m.TLSSANDNS, SANURI: m.TLSSANURI, SANEmail: m.TLSSANEmail},
	}
	switch {
	case m.Secret != "":
		r.secret = secret{kind: secretPlain, digest: sha256.Sum256([]byte(m.Secret))}
	case m.SecretHash != "":
		r.secret = secret{kind: secretBcrypt, hash: []byte(m.SecretHash), compare: bcrypt.CompareHashAndPassword}
	}
	if err := r.setKeys(ctx, v, &m); err != nil {
		return nil, fmt.Errorf("clientauth: client %q: jwks: %w", m.ID, err)
	}
	r.setRequestObjects(&m)
	if v.FAPI() {
		r.fapi = true
		// FAPI-CIBA: the server ensures the user can tell the requests
		// apart, here by requiring a binding_message.
		r.client.RequireBindingMessage = true
	}
	return r, nil
}

// setKeys sets the key set that verifies the client's signatures, and the
// certificates of a self_signed_tls_client_auth client (RFC 8705 §2.2:
// those of jwks, or those published at jwks_uri).
func (r *Registration) setKeys(ctx context.Context, v *clientmeta.Valid, m *clientmeta.Metadata) error {
	switch keys := v.Keys(); {
	case len(keys) > 0:
		ks, err := jose.NewStaticKeySet(gojose.JSONWebKeySet{Keys: keys})
		if err != nil {
			return err
		}
		r.keySet = ks
		if r.Allows(MethodSelfSignedTLSClientAuth) {
			r.certKeys = keys
		}
	case m.JWKSURI != "":
		ks := jose.NewRemoteKeySet(ctx, m.JWKSURI)
		r.keySet = ks
		if r.Allows(MethodSelfSignedTLSClientAuth) {
			r.certURI = ks
		}
	}
	return nil
}

// setRequestObjects sets how the client's request objects are verified:
// with its registered alg only, which it must then use (CIBA §4), or with
// the defaults; and HS256 under the plain secret with the legacy switch.
func (r *Registration) setRequestObjects(m *clientmeta.Metadata) {
	if m.AllowHS256RequestObject {
		r.allowHS256, r.hs256Secret = true, m.Secret
	}
	if m.RequestSigningAlg != "" {
		r.roAlgs, r.requireSigned = []string{m.RequestSigningAlg}, true
		return
	}
	r.roAlgs = jose.DefaultAlgs()
	if r.allowHS256 {
		r.roAlgs = append(r.roAlgs, "HS256")
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
