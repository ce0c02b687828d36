// Package clientmeta holds the rules of a registered client's metadata
// (RFC 7591 §2, CIBA Core §4, RFC 8705 §2, RFC 8628, FAPI-CIBA): which
// authentication methods, secrets, keys, delivery modes, request-signing
// algorithms and scopes a client may register, and how they combine.
//
// It is the one place these rules live. [Check] reports every broken rule
// with the metadata field it concerns, so that the configuration can show
// it with its YAML path and line, and returns a [Valid] client that the
// client authentication (internal/clientauth) builds from without checking
// again. Rules that relate a client to the rest of the server (mutual TLS
// reachable, a CA file, the upstream type, unique client ids) are the
// configuration's.
package clientmeta

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/go-jose/go-jose/v4"
)

// Client authentication methods (OIDC Core §9, RFC 8705 §2, RFC 7591 §2).
const (
	MethodSecretBasic             = "client_secret_basic"
	MethodSecretPost              = "client_secret_post"
	MethodPrivateKeyJWT           = "private_key_jwt"
	MethodTLSClientAuth           = "tls_client_auth"
	MethodSelfSignedTLSClientAuth = "self_signed_tls_client_auth"
	// MethodNone is the method of a public client (RFC 7591 §2): it
	// presents only its client_id. Allowed only for clients that use
	// nothing but the device authorization grant (RFC 8628 §3.1, §5.6).
	MethodNone = "none"
)

// Delivery modes (backchannel_token_delivery_mode, CIBA Core §4).
const (
	ModePoll = "poll"
	ModePing = "ping"
	ModePush = "push"
)

// ProfileFAPICIBA is the [Metadata.Profile] that puts a client under the
// FAPI-CIBA profile.
const ProfileFAPICIBA = "fapi-ciba"

// Methods are the authentication methods a confidential client may
// register, in the order messages list them.
func Methods() []string {
	return []string{MethodSecretBasic, MethodSecretPost, MethodPrivateKeyJWT, MethodTLSClientAuth, MethodSelfSignedTLSClientAuth}
}

// FAPIAlgs are the JWS algorithms FAPI allows (FAPI 1.0 Advanced §8.6),
// for request objects and client assertions.
func FAPIAlgs() []string { return []string{"PS256", "ES256"} }

// FAPIMethods are the authentication methods of a FAPI confidential
// client (FAPI 1.0 Advanced §5.2.2-14): private_key_jwt and mutual TLS.
func FAPIMethods() []string {
	return []string{MethodPrivateKeyJWT, MethodTLSClientAuth, MethodSelfSignedTLSClientAuth}
}

// Metadata is a client as the operator describes it, before any check.
// Field comments name the metadata (and configuration key) each holds.
type Metadata struct {
	// ID is client_id: required, printable ASCII (RFC 6749 Appendix A.1).
	ID string
	// Name is client_name, shown to the user.
	Name string
	// Secret is client_secret, in plain text; SecretHash is
	// client_secret_hash, its bcrypt hash. At most one.
	Secret     string
	SecretHash string
	// Methods is token_endpoint_auth_methods; empty means
	// client_secret_basic (RFC 7591 §2).
	Methods []string
	// DeliveryMode is backchannel_token_delivery_mode: poll, ping or push;
	// empty only for a device-grant-only client.
	DeliveryMode string
	// NotificationEndpoint is backchannel_client_notification_endpoint.
	NotificationEndpoint string
	// DeviceAuthorization lets the client use the device grant (RFC 8628).
	DeviceAuthorization bool
	// UserCodeParameter is backchannel_user_code_parameter.
	UserCodeParameter bool
	// RequestSigningAlg is backchannel_authentication_request_signing_alg.
	RequestSigningAlg string
	// AllowHS256RequestObject is allow_hs256_request_object, the legacy
	// switch for request objects MACed with the plain secret.
	AllowHS256RequestObject bool
	// JWKS is the inline JWK Set (jwks) as JSON; JWKSURI is jwks_uri. At
	// most one.
	JWKS    json.RawMessage
	JWKSURI string
	// Scopes are the scopes the client may request; empty: any.
	Scopes []string
	// AuthzDetailsTypes is authorization_details_types: the
	// authorization_details types (RFC 9396) the client may send; empty:
	// none.
	AuthzDetailsTypes []string
	// ServerAuthzDetailsTypes are the types the server supports (the
	// configuration's authorization_details.types); each of
	// AuthzDetailsTypes must be one.
	ServerAuthzDetailsTypes []string
	// Resources are the resource indicators (RFC 8707) and audiences the
	// client may ask for; empty: none.
	Resources []string
	// TLSSubjectDN, TLSSANDNS, TLSSANURI and TLSSANEmail are the
	// tls_client_auth_* names (RFC 8705 §2.1.2).
	TLSSubjectDN string
	TLSSANDNS    string
	TLSSANURI    string
	TLSSANEmail  string
	// Profile is profile: empty or [ProfileFAPICIBA].
	Profile string
	// ServerFAPI puts the client under FAPI-CIBA whatever its Profile (the
	// server's fapi.ciba switch).
	ServerFAPI bool
	// SenderConstrained makes a FAPI-CIBA client need sender-constrained
	// access tokens: CertBoundAccessTokens or DPoPBoundAccessTokens (the
	// server's fapi.sender_constrained_tokens).
	SenderConstrained bool
	// SkipValidation exempts the client's requests from the validation
	// hook. No rule applies; it is carried to the registration.
	SkipValidation bool
	// ActsForUser is acts_for_user: the client is a delegate (an agent)
	// acting on the user's behalf; its access tokens name it in an act
	// claim (RFC 8693 §4.1) and the user is told so. A client that
	// authenticates only (not a public one).
	ActsForUser bool
	// ServerActsForUser reports whether the server's token issuer can
	// name the actor in the tokens it issues (the local upstream); when
	// not, ActsForUser is refused rather than dropped.
	ServerActsForUser bool
	// CertBoundAccessTokens is whether the client's access tokens are
	// bound to its certificate (RFC 8705 §3), as in force: set, or implied
	// by the server. Its conditions are the configuration's rules; it is
	// carried to the registration.
	CertBoundAccessTokens bool
	// DPoPBoundAccessTokens is dpop_bound_access_tokens (RFC 9449 §5.2):
	// each token request of the client must carry a DPoP proof, and its
	// access tokens are bound to the proof's key. Push mode cannot have
	// it (the tokens are sent with no proof); the upstream's part is the
	// configuration's rule. It is carried to the registration.
	DPoPBoundAccessTokens bool
	// Introspection is introspection: the client may call the token
	// introspection endpoint (RFC 7662), as a resource server does. A
	// client that only introspects needs no delivery mode; a public client
	// cannot have it. The upstream's part is the configuration's rule.
	Introspection bool
}

// IsPublic reports whether the client is public: its only method is none.
func (m *Metadata) IsPublic() bool {
	return len(m.Methods) == 1 && m.Methods[0] == MethodNone
}

// UsesSecret reports whether one of the client's methods needs a client
// secret (client_secret_basic or client_secret_post).
func (m *Metadata) UsesSecret() bool {
	return slices.Contains(m.Methods, MethodSecretBasic) || slices.Contains(m.Methods, MethodSecretPost)
}

// fapi reports whether the client is under FAPI-CIBA, assuming a valid
// Profile.
func (m *Metadata) fapi() bool { return m.ServerFAPI || m.Profile == ProfileFAPICIBA }

// Problem is one broken rule.
type Problem struct {
	// Field is the path of the offending metadata inside the client, as
	// the configuration names it: "client_secret",
	// "token_endpoint_auth_methods[1]", "jwks.keys[0]".
	Field string
	// Message says what is wrong. It never quotes a secret, a hash or a
	// URL other than by its host.
	Message string
}

// Problems are every broken rule of a client.
type Problems []Problem

// Error lists the problems as "field: message", separated by "; ".
func (ps Problems) Error() string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.Field + ": " + p.Message
	}
	return strings.Join(s, "; ")
}

// Valid is a client whose metadata passed [Check]. It is immutable.
type Valid struct {
	m    Metadata
	keys []jose.JSONWebKey
}

// Metadata returns a copy of the checked metadata, with Methods defaulted
// (client_secret_basic when none was given).
func (v *Valid) Metadata() Metadata {
	m := v.m
	m.Methods = slices.Clone(m.Methods)
	m.Scopes = slices.Clone(m.Scopes)
	m.AuthzDetailsTypes = slices.Clone(m.AuthzDetailsTypes)
	m.ServerAuthzDetailsTypes = slices.Clone(m.ServerAuthzDetailsTypes)
	m.Resources = slices.Clone(m.Resources)
	m.JWKS = slices.Clone(m.JWKS)
	return m
}

// ID is the client_id.
func (v *Valid) ID() string { return v.m.ID }

// AuthzDetailsTypes are the authorization_details types the client may
// send; nil when none.
func (v *Valid) AuthzDetailsTypes() []string { return slices.Clone(v.m.AuthzDetailsTypes) }

// Keys are the public keys of the inline jwks, parsed; nil without jwks.
func (v *Valid) Keys() []jose.JSONWebKey { return slices.Clone(v.keys) }

// FAPI reports whether the client is under the FAPI-CIBA profile.
func (v *Valid) FAPI() bool { return v.m.fapi() }

// IsPublic reports whether the client is public (method none).
func (v *Valid) IsPublic() bool { return v.m.IsPublic() }

// Check applies every rule to m. It returns the valid client, or nil and
// every problem found.
func Check(m Metadata) (*Valid, Problems) {
	m.Methods = slices.Clone(m.Methods)
	if len(m.Methods) == 0 {
		m.Methods = []string{MethodSecretBasic}
	}
	m.Scopes = slices.Clone(m.Scopes)
	m.AuthzDetailsTypes = slices.Clone(m.AuthzDetailsTypes)
	m.ServerAuthzDetailsTypes = slices.Clone(m.ServerAuthzDetailsTypes)
	m.Resources = slices.Clone(m.Resources)
	m.JWKS = slices.Clone(m.JWKS)
	c := checker{m: &m}
	c.id()
	c.methods()
	c.secret()
	c.delivery()
	keys := c.keys()
	c.signingAlg(keys)
	c.hs256()
	c.scopes()
	c.authzDetailsTypes()
	c.actsForUser()
	c.resources()
	c.public()
	c.profile()
	c.tlsNames()
	c.dpop()
	c.introspection()
	c.signedOnly()
	if len(c.problems) > 0 {
		return nil, c.problems
	}
	return &Valid{m: m, keys: keys}, nil
}

// checker gathers the problems of one client.
type checker struct {
	m        *Metadata
	problems Problems
}

func (c *checker) fail(field, format string, args ...any) {
	c.problems = append(c.problems, Problem{Field: field, Message: fmt.Sprintf(format, args...)})
}
