package clientmeta

import (
	"fmt"
	"slices"
	"strings"

	"github.com/go-jose/go-jose/v4"
)

// MinHS256SecretLen is the shortest client secret usable as an HS256 key
// (RFC 7518 §3.2: a key of at least the hash size); internal/jose refuses
// shorter ones when verifying.
const MinHS256SecretLen = 32

// Field names of the metadata that several rules report on.
const (
	fieldMethods  = "token_endpoint_auth_methods"
	fieldMode     = "backchannel_token_delivery_mode"
	fieldEndpoint = "backchannel_client_notification_endpoint"
	fieldAlg      = "backchannel_authentication_request_signing_alg"
	fieldHS256    = "allow_hs256_request_object"
)

// index is the field of element i of a list field.
func index(field string, i int) string { return fmt.Sprintf("%s[%d]", field, i) }

// id: client_id is required and printable ASCII.
func (c *checker) id() {
	switch {
	case c.m.ID == "":
		c.fail("client_id", "required")
	case !IsVSChars(c.m.ID):
		c.fail("client_id", "must be printable ASCII (RFC 6749 Appendix A.1), got %q", c.m.ID)
	}
}

// methods: each method is supported and listed once.
func (c *checker) methods() {
	supported := Methods()
	seen := make(map[string]bool)
	for j, meth := range c.m.Methods {
		switch {
		case !slices.Contains(supported, meth) && meth != MethodNone:
			c.fail(index(fieldMethods, j), "must be one of %s, got %q", strings.Join(supported, ", "), meth)
		case seen[meth]:
			c.fail(index(fieldMethods, j), "%q is listed twice", meth)
		}
		seen[meth] = true
	}
}

// secret: a client_secret_* method needs exactly one of the secret and its
// hash; without one, neither is allowed (a stale secret in the file is a
// liability), except the plain secret the HS256 switch needs.
func (c *checker) secret() {
	m := c.m
	const unused = "not allowed: no client_secret_* method is listed in token_endpoint_auth_methods"
	switch {
	case m.UsesSecret() && m.Secret != "" && m.SecretHash != "":
		c.fail("client_secret_hash", "set client_secret or client_secret_hash, not both")
	case m.UsesSecret() && m.Secret == "" && m.SecretHash == "":
		var by []string
		for _, meth := range m.Methods {
			if meth == MethodSecretBasic || meth == MethodSecretPost {
				by = append(by, meth)
			}
		}
		c.fail("client_secret", "required by %s: set client_secret or client_secret_hash", strings.Join(by, " and "))
	case !m.UsesSecret():
		if m.Secret != "" && !m.AllowHS256RequestObject {
			c.fail("client_secret", unused)
		}
		if m.SecretHash != "" {
			c.fail("client_secret_hash", unused)
		}
	}
	if m.SecretHash != "" {
		if msg := CheckBcrypt(m.SecretHash); msg != "" {
			c.fail("client_secret_hash", "%s", msg)
		}
	}
}

// delivery: the delivery mode, and the notification endpoint that ping and
// push need and poll must not have (CIBA Core §4).
func (c *checker) delivery() {
	m := c.m
	switch m.DeliveryMode {
	case "":
		// A public client is device-only: see public. A resource server
		// that only introspects tokens needs no mode.
		if !m.DeviceAuthorization && !m.IsPublic() && !m.Introspection {
			c.fail(fieldMode, "required: poll, ping or push (CIBA Core §4)")
		}
	case ModePoll:
		if m.NotificationEndpoint != "" {
			c.fail(fieldEndpoint, "must be empty in poll mode, which sends no notifications (CIBA Core §4)")
		}
	case ModePing, ModePush:
		if m.NotificationEndpoint == "" {
			c.fail(fieldEndpoint, "required in %s mode (CIBA Core §4)", m.DeliveryMode)
		} else if msg := CheckHTTPURL(m.NotificationEndpoint); msg != "" {
			c.fail(fieldEndpoint, "%s", msg)
		}
	default:
		c.fail(fieldMode, "must be one of %s, got %q", strings.Join([]string{ModePoll, ModePing, ModePush}, ", "), m.DeliveryMode)
	}
}

// keys: jwks or jwks_uri, not both, each well formed; the methods that
// verify the client's keys need one of them. It returns the keys of jwks.
func (c *checker) keys() []jose.JSONWebKey {
	m := c.m
	if len(m.JWKS) > 0 && m.JWKSURI != "" {
		c.fail("jwks_uri", "set jwks or jwks_uri, not both")
	}
	var keys []jose.JSONWebKey
	if len(m.JWKS) > 0 {
		keys = checkJWKS(m.JWKS, func(sub, format string, args ...any) {
			field := "jwks"
			if sub != "" {
				field += "." + sub
			}
			c.fail(field, format, args...)
		})
	}
	if m.JWKSURI != "" {
		if msg := CheckHTTPURL(m.JWKSURI); msg != "" {
			c.fail("jwks_uri", "%s", msg)
		}
	}
	hasKeys := len(m.JWKS) > 0 || m.JWKSURI != ""
	if slices.Contains(m.Methods, MethodPrivateKeyJWT) && !hasKeys {
		c.fail(fieldMethods, "private_key_jwt needs the client's public keys: set jwks or jwks_uri")
	}
	if slices.Contains(m.Methods, MethodSelfSignedTLSClientAuth) && !hasKeys {
		c.fail(fieldMethods, "%s needs the client's certificate in jwks or at jwks_uri (RFC 8705 §2.2: x5c, or the certificate's public key)", MethodSelfSignedTLSClientAuth)
	}
	return keys
}

// signingAlg: backchannel_authentication_request_signing_alg is RS256,
// PS256 or ES256 with keys able to verify it, or HS256 with the legacy
// switch (CIBA Core §7.1.1).
func (c *checker) signingAlg(keys []jose.JSONWebKey) {
	m := c.m
	switch alg := m.RequestSigningAlg; alg {
	case "":
	case "RS256", "PS256", "ES256":
		if len(m.JWKS) == 0 && m.JWKSURI == "" {
			c.fail(fieldAlg, "%s needs the client's public keys: set jwks or jwks_uri", alg)
		} else if len(keys) > 0 && !slices.ContainsFunc(keys, func(k jose.JSONWebKey) bool { return keyFitsAlg(k, alg) }) {
			c.fail(fieldAlg, "jwks holds no signing key usable with %s", alg)
		}
	case "HS256":
		if !m.AllowHS256RequestObject {
			c.fail(fieldAlg, "HS256 needs allow_hs256_request_object: true; CIBA Core §7.1.1 asks for an asymmetric signature (RS256, PS256 or ES256)")
		}
	default:
		c.fail(fieldAlg, "must be RS256, PS256 or ES256 (or HS256 with allow_hs256_request_object), got %q", alg)
	}
}

// hs256: the legacy switch needs a plain secret long enough to be an HS256
// key, and contradicts an asymmetric signing alg.
func (c *checker) hs256() {
	m := c.m
	if !m.AllowHS256RequestObject {
		return
	}
	if m.RequestSigningAlg != "" && m.RequestSigningAlg != "HS256" {
		c.fail(fieldHS256, "contradicts backchannel_authentication_request_signing_alg %s, which every request must be signed with", m.RequestSigningAlg)
		return
	}
	switch {
	case m.Secret == "":
		c.fail(fieldHS256, "needs a plain client_secret to check HS256 signatures; a client_secret_hash cannot be used")
	case len(m.Secret) < MinHS256SecretLen:
		c.fail(fieldHS256, "needs a client_secret of at least %d bytes, the minimum length of an HS256 key (RFC 7518 §3.2)", MinHS256SecretLen)
	}
}

// scopes: scope-tokens, each once, including openid.
func (c *checker) scopes() {
	seen := make(map[string]bool)
	for j, s := range c.m.Scopes {
		switch {
		case !IsScopeToken(s):
			c.fail(index("scopes", j), "invalid scope %q: a scope is non-empty, without spaces, quotes or backslashes (RFC 6749 §3.3)", s)
		case seen[s]:
			c.fail(index("scopes", j), "scope %q is listed twice", s)
		}
		seen[s] = true
	}
	if len(c.m.Scopes) > 0 && !seen["openid"] {
		c.fail("scopes", "must include openid, which every CIBA request carries (CIBA Core §7.1); leave scopes out to allow any scope")
	}
}

// fieldAuthzTypes is the client's list of authorization_details types.
const fieldAuthzTypes = "authorization_details_types"

// maxAuthzDetailsType bounds a type name, in bytes.
const maxAuthzDetailsType = 200

// CheckAuthzDetailsType returns why t cannot be an authorization_details
// type in the configuration, or "": 1 to 200 printable ASCII characters
// without spaces, quotes or backslashes (a name or a URI, RFC 9396 §2).
func CheckAuthzDetailsType(t string) string {
	if t == "" || len(t) > maxAuthzDetailsType {
		return fmt.Sprintf("an authorization_details type is 1 to %d characters", maxAuthzDetailsType)
	}
	for i := 0; i < len(t); i++ {
		if c := t[i]; c <= 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			return fmt.Sprintf("authorization_details type %q: use printable ASCII without spaces, quotes or backslashes", t)
		}
	}
	return ""
}

// authzDetailsTypes: each type valid, listed once, and supported by the
// server; a public (device-grant-only) client sends none, since it does
// not use bc-authorize.
func (c *checker) authzDetailsTypes() {
	seen := make(map[string]bool)
	for j, t := range c.m.AuthzDetailsTypes {
		switch {
		case CheckAuthzDetailsType(t) != "":
			c.fail(index(fieldAuthzTypes, j), "%s", CheckAuthzDetailsType(t))
		case seen[t]:
			c.fail(index(fieldAuthzTypes, j), "type %q is listed twice", t)
		case !slices.Contains(c.m.ServerAuthzDetailsTypes, t):
			c.fail(index(fieldAuthzTypes, j), "type %q is not one of authorization_details.types; configure its schema there first", t)
		}
		seen[t] = true
	}
	if len(c.m.AuthzDetailsTypes) > 0 && c.m.IsPublic() {
		c.fail(fieldAuthzTypes, "a public client (token_endpoint_auth_methods: [none]) uses only the device grant, which does not take authorization_details; remove it")
	}
}

// fieldActsForUser is the name of the delegate switch.
const fieldActsForUser = "acts_for_user"

// actsForUser: a delegate is named in the tokens as the actor (RFC 8693
// §4.1), so it must be a client that authenticates, and the tokens must
// come from an issuer that can name it.
func (c *checker) actsForUser() {
	if !c.m.ActsForUser {
		return
	}
	if c.m.IsPublic() {
		c.fail(fieldActsForUser, "a public client (token_endpoint_auth_methods: [none]) cannot be named as the actor in tokens: it does not authenticate; remove it")
	}
	if !c.m.ServerActsForUser {
		c.fail(fieldActsForUser, "works with the local upstream only: the identity provider issues the tokens of the other upstreams and would not name the client as the actor")
	}
}

// public: method none stands alone, and a public client uses the device
// grant only and has no credentials (RFC 8628 §5.6).
func (c *checker) public() {
	m := c.m
	if !m.IsPublic() {
		if len(m.Methods) > 1 && slices.Contains(m.Methods, MethodNone) {
			c.fail(fieldMethods, "%q cannot be listed with other methods: a public client has no credentials", MethodNone)
		}
		return
	}
	if !m.DeviceAuthorization {
		c.fail(fieldMethods, "%q (a public client) is allowed only with device_authorization: true; CIBA needs an authenticated client", MethodNone)
	}
	if m.DeliveryMode != "" {
		c.fail(fieldMode, "not allowed for a public client: CIBA needs an authenticated client")
	}
	if m.Secret != "" || m.SecretHash != "" || len(m.JWKS) > 0 || m.JWKSURI != "" {
		c.fail(fieldMethods, "a public client (%q) has no client_secret, client_secret_hash, jwks or jwks_uri", MethodNone)
	}
}

// profile: the profile is known, and a FAPI-CIBA client sends requests
// signed with PS256 or ES256 (FAPI-CIBA §5.2.2, FAPI 1.0 Advanced §8.6),
// authenticates with private_key_jwt or mutual TLS (FAPI 1.0 Advanced
// §5.2.2-14), does not use push (FAPI-CIBA §5.2.2) and, when the server
// asks (Metadata.SenderConstrained), has sender-constrained access tokens
// (mutual TLS or DPoP; FAPI 1.0 Advanced §5.2.2-5). A client secret,
// or the HS256 switch, is refused by the rules every client follows.
func (c *checker) profile() {
	m := c.m
	if m.Profile != "" && m.Profile != ProfileFAPICIBA {
		c.fail("profile", "must be empty or %s, got %q", ProfileFAPICIBA, m.Profile)
		return
	}
	if !m.fapi() {
		return
	}
	switch alg := m.RequestSigningAlg; {
	case alg == "":
		c.fail(fieldAlg, "required by the FAPI-CIBA profile, which accepts only signed authentication requests: PS256 or ES256")
	case !slices.Contains(FAPIAlgs(), alg):
		c.fail(fieldAlg, "must be PS256 or ES256 under the FAPI-CIBA profile (FAPI 1.0 Advanced §8.6), got %q", alg)
	}
	allowed := FAPIMethods()
	for j, meth := range m.Methods {
		if !slices.Contains(allowed, meth) {
			c.fail(index(fieldMethods, j), "%q is not allowed under the FAPI-CIBA profile, which asks for %s (FAPI 1.0 Advanced §5.2.2-14)", meth, strings.Join(allowed, " or "))
		}
	}
	if m.DeliveryMode == ModePush {
		c.fail(fieldMode, "push is not allowed under the FAPI-CIBA profile (FAPI-CIBA §5.2.2); use poll or ping")
	}
	if m.SenderConstrained && !m.CertBoundAccessTokens && !m.DPoPBoundAccessTokens {
		c.fail("dpop_bound_access_tokens", "the server requires sender-constrained access tokens of FAPI-CIBA clients (fapi.sender_constrained_tokens; FAPI 1.0 Advanced §5.2.2-5): set dpop_bound_access_tokens: true, or tls_client_certificate_bound_access_tokens: true, or authenticate with tls_client_auth or self_signed_tls_client_auth")
	}
}

// tlsNames: tls_client_auth needs exactly one tls_client_auth_* name, and
// the names are for tls_client_auth only (RFC 8705 §2.1.2).
func (c *checker) tlsNames() {
	set := c.m.tlsNames()
	pki := slices.Contains(c.m.Methods, MethodTLSClientAuth)
	switch {
	case pki && len(set) == 0:
		c.fail(fieldMethods, "tls_client_auth needs one of tls_client_auth_subject_dn, tls_client_auth_san_dns, tls_client_auth_san_uri or tls_client_auth_san_email (RFC 8705 §2.1.2)")
	case pki && len(set) > 1:
		c.fail(set[1], "set exactly one of the tls_client_auth_* names (RFC 8705 §2.1.2), also set: %s", set[0])
	case !pki && len(set) > 0:
		c.fail(set[0], "only used by tls_client_auth, which token_endpoint_auth_methods does not list")
	}
}

// tlsNames returns the fields of the tls_client_auth_* names set, sorted.
func (m *Metadata) tlsNames() []string {
	var set []string
	for k, v := range map[string]string{
		"tls_client_auth_subject_dn": m.TLSSubjectDN,
		"tls_client_auth_san_dns":    m.TLSSANDNS,
		"tls_client_auth_san_uri":    m.TLSSANURI,
		"tls_client_auth_san_email":  m.TLSSANEmail,
	} {
		if v != "" {
			set = append(set, k)
		}
	}
	slices.Sort(set)
	return set
}

// HasOneTLSName reports whether exactly one tls_client_auth_* name is set.
func (m *Metadata) HasOneTLSName() bool { return len(m.tlsNames()) == 1 }

// dpop: a client with DPoP-bound access tokens proves its key on each
// token request (RFC 9449 §5.2); in push mode the tokens are sent to it
// without any request, so no proof binds them.
func (c *checker) dpop() {
	if c.m.DPoPBoundAccessTokens && c.m.DeliveryMode == ModePush {
		c.fail("dpop_bound_access_tokens", "not allowed in push mode, whose tokens are delivered without a token request to carry a DPoP proof (RFC 9449 §5); use poll or ping")
	}
}

// signedOnly: a client whose authentication requests must be signed
// (backchannel_authentication_request_signing_alg, CIBA Core §4; every
// FAPI-CIBA client, FAPI-CIBA §5.2.2-6) cannot have the device grant. The
// device authorization request (RFC 8628 §3.1) is a plain form with no
// signed form: its scope, authorization_details (RFC 9396 §3) and resource
// (RFC 8707) would be taken unsigned, and a stolen client credential could
// ask for what bc-authorize accepts only under the client's signature.
func (c *checker) signedOnly() {
	m := c.m
	if m.RequestSigningAlg == "" || !m.DeviceAuthorization {
		return
	}
	why := "its authentication requests must be signed (backchannel_authentication_request_signing_alg " + m.RequestSigningAlg + ", CIBA Core §7.1.1)"
	if m.fapi() {
		why = "under the FAPI-CIBA profile its authentication requests must be signed (FAPI-CIBA §5.2.2-6)"
	}
	c.fail("device_authorization", "not allowed for client %q: %s, but a device authorization request (RFC 8628 §3.1) cannot be signed, so its scope, authorization_details and resource would be taken unsigned; use a separate client for the device grant", m.ID, why)
}

// introspection: the token introspection endpoint is for authenticated
// callers (RFC 7662 §2.1), which a public client is not.
func (c *checker) introspection() {
	if c.m.Introspection && c.m.IsPublic() {
		c.fail("introspection", "not allowed for a public client (token_endpoint_auth_methods: [none]): the introspection endpoint needs an authenticated caller (RFC 7662 §2.1)")
	}
}

// maxResource bounds one entry of resources, in bytes (ciba.MaxResourceLength).
const maxResource = 2048

// resources: each entry a value a client could send as resource or
// audience (printable ASCII without spaces, quotes, backslashes or a
// fragment, which no resource indicator has, RFC 8707 §2), listed once; a
// public (device-grant-only) client sends none. Whether an entry is an
// absolute URI is checked per request: one that is not can only be sent
// as audience.
func (c *checker) resources() {
	seen := make(map[string]bool)
	for j, r := range c.m.Resources {
		bad := r == "" || len(r) > maxResource
		for i := 0; i < len(r) && !bad; i++ {
			bad = r[i] <= 0x20 || r[i] >= 0x7f || r[i] == '"' || r[i] == '\\'
		}
		switch {
		case bad:
			c.fail(index("resources", j), "an entry is 1 to %d printable ASCII characters without spaces, quotes or backslashes", maxResource)
		case strings.Contains(r, "#"):
			c.fail(index("resources", j), "%q has a fragment, which a resource indicator must not have (RFC 8707 §2)", r)
		case seen[r]:
			c.fail(index("resources", j), "%q is listed twice", r)
		}
		seen[r] = true
	}
	if len(c.m.Resources) > 0 && c.m.IsPublic() {
		c.fail("resources", "a public client (token_endpoint_auth_methods: [none]) uses only the device grant, which does not take resource or audience; remove it")
	}
}
