package clientmeta

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

// demoJWKS is a JWK Set of one public EC P-256 key for ES256.
const demoJWKS = `{"keys":[{"kty":"EC","crv":"P-256","kid":"k1","alg":"ES256","use":"sig",` +
	`"x":"1Uq-qWYl4XWcPCO8wkB59-EpdHLQEabd6B0_be8JP7g","y":"OP4qyNXJFAMUXLA7DdxuNWY2hk4X8M0QuIzX4aucIRM"}]}`

// aHash is a bcrypt hash (of "secret").
const aHash = "$2a$10$spJ.y58rlNOoHwC/fKk3.OoacF3R0k9OFHXbH8WIIXHS/cr20EHNu"

// longSecret is long enough to be an HS256 key.
const longSecret = "0123456789abcdef0123456789abcdef"

// Valid clients, one per kind, that the rows below break.
func secretClient() Metadata {
	return Metadata{ID: "c1", Secret: "s1", DeliveryMode: ModePoll}
}

func keysClient() Metadata {
	return Metadata{ID: "k1", Methods: []string{MethodPrivateKeyJWT}, JWKS: json.RawMessage(demoJWKS), DeliveryMode: ModePoll}
}

func fapiClient() Metadata {
	m := keysClient()
	m.RequestSigningAlg, m.Profile = "ES256", ProfileFAPICIBA
	return m
}

func publicClient() Metadata {
	return Metadata{ID: "tv", Methods: []string{MethodNone}, DeviceAuthorization: true}
}

func tlsClient() Metadata {
	return Metadata{ID: "m1", Methods: []string{MethodTLSClientAuth}, TLSSubjectDN: "CN=m1", DeliveryMode: ModePoll}
}

// privateJWKS is a JWK Set holding a private key.
func privateJWKS(t *testing.T) json.RawMessage {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: k}}})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// resourceServer is a client that only introspects tokens: it needs no
// delivery mode.
func resourceServer() Metadata {
	return Metadata{ID: "rs", Secret: "s1", Introspection: true}
}

func TestValidClients(t *testing.T) {
	for name, m := range map[string]Metadata{
		"secret": secretClient(), "keys": keysClient(), "fapi": fapiClient(), "public": publicClient(), "tls": tlsClient(),
		"resource server": resourceServer(),
	} {
		if _, problems := Check(m); problems != nil {
			t.Errorf("%s: %v", name, problems)
		}
	}
}

// TestEachRuleOnce has one row per client rule: each breaks exactly that
// rule in a valid client, and the rule must be reported exactly once, on
// its field, with its message. No two rules share a field and message.
func TestEachRuleOnce(t *testing.T) {
	tests := []struct {
		name   string
		base   func() Metadata
		change func(*Metadata)
		field  string
		msg    string
	}{
		{"client_id is required", secretClient, func(m *Metadata) { m.ID = "" }, "client_id", "required"},
		{"client_id is printable ASCII", secretClient, func(m *Metadata) { m.ID = "a\nb" }, "client_id", "must be printable ASCII (RFC 6749 Appendix A.1)"},
		{"methods are supported ones", secretClient, func(m *Metadata) { m.Methods = []string{MethodSecretBasic, "client_secret_jwt"} },
			"token_endpoint_auth_methods[1]", `must be one of client_secret_basic, client_secret_post, private_key_jwt, tls_client_auth, self_signed_tls_client_auth, got "client_secret_jwt"`},
		{"a method is listed once", secretClient, func(m *Metadata) { m.Methods = []string{MethodSecretBasic, MethodSecretBasic} },
			"token_endpoint_auth_methods[1]", `"client_secret_basic" is listed twice`},
		{"a secret or its hash, not both", secretClient, func(m *Metadata) { m.SecretHash = aHash },
			"client_secret_hash", "set client_secret or client_secret_hash, not both"},
		{"client_secret_* needs a secret", secretClient, func(m *Metadata) { m.Secret = "" },
			"client_secret", "required by client_secret_basic: set client_secret"},
		{"the secret is required by the methods listed", secretClient, func(m *Metadata) { m.Secret, m.Methods = "", []string{MethodSecretPost} },
			"client_secret", "required by client_secret_post: set client_secret"},
		{"no secret without a client_secret_* method", keysClient, func(m *Metadata) { m.Secret = "s1" },
			"client_secret", "not allowed: no client_secret_* method"},
		{"no secret hash without a client_secret_* method", keysClient, func(m *Metadata) { m.SecretHash = aHash },
			"client_secret_hash", "not allowed: no client_secret_* method"},
		{"the secret hash is bcrypt", secretClient, func(m *Metadata) { m.Secret, m.SecretHash = "", "sha256:abcd" },
			"client_secret_hash", "not a bcrypt hash"},
		{"a delivery mode is required", secretClient, func(m *Metadata) { m.DeliveryMode = "" },
			"backchannel_token_delivery_mode", "required: poll, ping or push (CIBA Core §4)"},
		{"the delivery mode is poll, ping or push", secretClient, func(m *Metadata) { m.DeliveryMode = "pull" },
			"backchannel_token_delivery_mode", `must be one of poll, ping, push, got "pull"`},
		{"poll has no notification endpoint", secretClient, func(m *Metadata) { m.NotificationEndpoint = "https://c.example/cb" },
			"backchannel_client_notification_endpoint", "must be empty in poll mode"},
		{"ping needs a notification endpoint", secretClient, func(m *Metadata) { m.DeliveryMode = ModePing },
			"backchannel_client_notification_endpoint", "required in ping mode"},
		{"push mode cannot have DPoP-bound access tokens (RFC 9449 §5)", secretClient, func(m *Metadata) {
			m.DeliveryMode, m.NotificationEndpoint, m.DPoPBoundAccessTokens = ModePush, "https://c.example/cb", true
		}, "dpop_bound_access_tokens", "not allowed in push mode"},
		{"a public client cannot introspect (RFC 7662 §2.1)", publicClient, func(m *Metadata) { m.Introspection = true },
			"introspection", "not allowed for a public client"},
		{"the notification endpoint is an http(s) URL", secretClient, func(m *Metadata) {
			m.DeliveryMode, m.NotificationEndpoint = ModePush, "ftp://c.example/cb"
		}, "backchannel_client_notification_endpoint", "must be an absolute http or https URL"},
		{"jwks or jwks_uri, not both", keysClient, func(m *Metadata) { m.JWKSURI = "https://c.example/jwks" },
			"jwks_uri", "set jwks or jwks_uri, not both"},
		{"jwks is a JWK Set", keysClient, func(m *Metadata) { m.JWKS = json.RawMessage(`[]`) },
			"jwks", "not a JWK Set (RFC 7517 §5)"},
		{"jwks holds keys", keysClient, func(m *Metadata) { m.JWKS = json.RawMessage(`{"keys":[]}`) },
			"jwks", "the JWK Set holds no keys"},
		{"jwks keys are JWKs", keysClient, func(m *Metadata) { m.JWKS = json.RawMessage(`{"keys":[{"kty":"EC"}]}`) },
			"jwks.keys[0]", "not a valid JWK"},
		{"jwks keys are public", keysClient, func(m *Metadata) { m.JWKS = privateJWKS(t) },
			"jwks.keys[0]", "holds a private or symmetric key"},
		{"jwks kids are unique", keysClient, func(m *Metadata) {
			k := demoJWKS[len(`{"keys":[`) : len(demoJWKS)-2]
			m.JWKS = json.RawMessage(`{"keys":[` + k + `,` + k + `]}`)
		}, "jwks.keys[1]", `duplicate kid "k1" (also keys[0])`},
		{"jwks_uri is an absolute http(s) URL", keysClient, func(m *Metadata) { m.JWKS, m.JWKSURI = nil, "/jwks" },
			"jwks_uri", "must be an absolute http or https URL"},
		{"private_key_jwt needs keys", secretClient, func(m *Metadata) { m.Methods = []string{MethodSecretBasic, MethodPrivateKeyJWT} },
			"token_endpoint_auth_methods", "private_key_jwt needs the client's public keys"},
		{"self_signed_tls_client_auth needs keys", secretClient, func(m *Metadata) {
			m.Methods = []string{MethodSecretBasic, MethodSelfSignedTLSClientAuth}
		}, "token_endpoint_auth_methods", "self_signed_tls_client_auth needs the client's certificate in jwks or at jwks_uri"},
		{"an asymmetric signing alg needs keys", secretClient, func(m *Metadata) { m.RequestSigningAlg = "PS256" },
			"backchannel_authentication_request_signing_alg", "PS256 needs the client's public keys"},
		{"jwks holds a key for the signing alg", keysClient, func(m *Metadata) { m.RequestSigningAlg = "RS256" },
			"backchannel_authentication_request_signing_alg", "jwks holds no signing key usable with RS256"},
		{"HS256 needs the legacy switch", secretClient, func(m *Metadata) { m.RequestSigningAlg = "HS256" },
			"backchannel_authentication_request_signing_alg", "HS256 needs allow_hs256_request_object: true"},
		{"the signing alg is a known one", keysClient, func(m *Metadata) { m.RequestSigningAlg = "none" },
			"backchannel_authentication_request_signing_alg", `must be RS256, PS256 or ES256 (or HS256 with allow_hs256_request_object), got "none"`},
		{"the HS256 switch contradicts an asymmetric alg", keysClient, func(m *Metadata) {
			m.RequestSigningAlg, m.AllowHS256RequestObject, m.Secret = "ES256", true, longSecret
		}, "allow_hs256_request_object", "contradicts backchannel_authentication_request_signing_alg ES256"},
		{"the HS256 switch needs the plain secret", secretClient, func(m *Metadata) {
			m.Secret, m.SecretHash, m.AllowHS256RequestObject = "", aHash, true
		}, "allow_hs256_request_object", "needs a plain client_secret"},
		{"the HS256 switch needs a secret of 32 bytes", secretClient, func(m *Metadata) { m.AllowHS256RequestObject = true },
			"allow_hs256_request_object", "needs a client_secret of at least 32 bytes"},
		{"scopes are scope-tokens", secretClient, func(m *Metadata) { m.Scopes = []string{"openid", "a b"} },
			"scopes[1]", `invalid scope "a b"`},
		{"a scope is listed once", secretClient, func(m *Metadata) { m.Scopes = []string{"openid", "openid"} },
			"scopes[1]", `scope "openid" is listed twice`},
		{"scopes include openid", secretClient, func(m *Metadata) { m.Scopes = []string{"profile"} },
			"scopes", "must include openid"},
		{"none stands alone", secretClient, func(m *Metadata) { m.Methods = []string{MethodSecretBasic, MethodNone} },
			"token_endpoint_auth_methods", `"none" cannot be listed with other methods`},
		{"a public client uses the device grant", publicClient, func(m *Metadata) { m.DeviceAuthorization = false },
			"token_endpoint_auth_methods", `"none" (a public client) is allowed only with device_authorization: true`},
		{"a public client has no delivery mode", publicClient, func(m *Metadata) { m.DeliveryMode = ModePoll },
			"backchannel_token_delivery_mode", "not allowed for a public client"},
		{"a public client has no credentials", publicClient, func(m *Metadata) { m.JWKSURI = "https://c.example/jwks" },
			"token_endpoint_auth_methods", `a public client ("none") has no client_secret, client_secret_hash, jwks or jwks_uri`},
		{"the profile is known", secretClient, func(m *Metadata) { m.Profile = "fapi" },
			"profile", `must be empty or fapi-ciba, got "fapi"`},
		{"FAPI-CIBA: signed requests", fapiClient, func(m *Metadata) { m.RequestSigningAlg = "" },
			"backchannel_authentication_request_signing_alg", "required by the FAPI-CIBA profile"},
		{"FAPI-CIBA: PS256 or ES256", fapiClient, func(m *Metadata) {
			m.JWKS, m.JWKSURI, m.RequestSigningAlg = nil, "https://c.example/jwks", "RS256"
		}, "backchannel_authentication_request_signing_alg", `must be PS256 or ES256 under the FAPI-CIBA profile (FAPI 1.0 Advanced §8.6), got "RS256"`},
		{"FAPI-CIBA: private_key_jwt or mutual TLS", fapiClient, func(m *Metadata) {
			m.Methods, m.Secret = []string{MethodSecretPost}, "s1"
		}, "token_endpoint_auth_methods[0]", `"client_secret_post" is not allowed under the FAPI-CIBA profile`},
		{"FAPI-CIBA: sender-constrained access tokens when the server asks (mTLS or DPoP)", fapiClient, func(m *Metadata) {
			m.SenderConstrained = true
		}, "dpop_bound_access_tokens", "requires sender-constrained access tokens"},
		{"FAPI-CIBA: no push", fapiClient, func(m *Metadata) {
			m.DeliveryMode, m.NotificationEndpoint = ModePush, "https://c.example/cb"
		}, "backchannel_token_delivery_mode", "push is not allowed under the FAPI-CIBA profile"},
		{"FAPI-CIBA: no device grant, whose requests cannot be signed (FAPI-CIBA §5.2.2-6, RFC 8628 §3.1)", fapiClient, func(m *Metadata) { m.DeviceAuthorization = true },
			"device_authorization", `not allowed for client "k1": under the FAPI-CIBA profile its authentication requests must be signed`},
		{"signed requests required: no device grant, whose requests cannot be signed (CIBA Core §4)", keysClient, func(m *Metadata) {
			m.RequestSigningAlg, m.DeviceAuthorization = "ES256", true
		}, "device_authorization", `not allowed for client "k1": its authentication requests must be signed (backchannel_authentication_request_signing_alg ES256`},
		{"tls_client_auth needs a subject name", tlsClient, func(m *Metadata) { m.TLSSubjectDN = "" },
			"token_endpoint_auth_methods", "tls_client_auth needs one of tls_client_auth_subject_dn"},
		{"tls_client_auth has one subject name", tlsClient, func(m *Metadata) { m.TLSSANDNS = "m1.example" },
			"tls_client_auth_subject_dn", "set exactly one of the tls_client_auth_* names (RFC 8705 §2.1.2), also set: tls_client_auth_san_dns"},
		{"the subject names are tls_client_auth's", secretClient, func(m *Metadata) { m.TLSSANURI = "https://m1.example" },
			"tls_client_auth_san_uri", "only used by tls_client_auth"},
	}
	seen := make(map[Problem]string)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := tt.base()
			tt.change(&m)
			v, problems := Check(m)
			if v != nil || len(problems) != 1 {
				t.Fatalf("Check = %v, %v; want exactly one problem", v, problems)
			}
			p := problems[0]
			if p.Field != tt.field || !strings.Contains(p.Message, tt.msg) {
				t.Fatalf("problem = %s: %s; want %s: …%s…", p.Field, p.Message, tt.field, tt.msg)
			}
			if other, dup := seen[p]; dup {
				t.Fatalf("rule %q reports the same problem as %q", tt.name, other)
			}
			seen[p] = tt.name
		})
	}
}

func TestServerFAPI(t *testing.T) {
	m := keysClient()
	m.ServerFAPI = true
	_, problems := Check(m)
	if len(problems) != 1 || problems[0].Field != "backchannel_authentication_request_signing_alg" {
		t.Fatalf("problems = %v; want the signed-request rule of FAPI-CIBA only", problems)
	}
	m.RequestSigningAlg = "ES256"
	v, problems := Check(m)
	if problems != nil || !v.FAPI() {
		t.Fatalf("Check = %v, %v; want a FAPI client", v, problems)
	}
}

func TestValid(t *testing.T) {
	m := secretClient()
	m.Scopes = []string{"openid"}
	v, problems := Check(m)
	if problems != nil {
		t.Fatal(problems)
	}
	got := v.Metadata()
	if !slices.Equal(got.Methods, []string{MethodSecretBasic}) {
		t.Fatalf("Methods = %v, want the RFC 7591 default client_secret_basic", got.Methods)
	}
	got.Scopes[0] = "changed"
	m.Scopes[0] = "changed too"
	if v.Metadata().Scopes[0] != "openid" {
		t.Fatal("a Valid client changed with a copy of its metadata")
	}
	if v.ID() != "c1" || v.IsPublic() || v.FAPI() || v.Keys() != nil {
		t.Fatalf("Valid = %+v", v)
	}
	k, _ := Check(keysClient())
	if len(k.Keys()) != 1 || k.Keys()[0].KeyID != "k1" {
		t.Fatalf("Keys = %v, want the jwks key k1", k.Keys())
	}
}

func TestProblemsError(t *testing.T) {
	_, problems := Check(Metadata{Secret: "not this"})
	s := problems.Error()
	if !strings.Contains(s, "client_id: required") || !strings.Contains(s, "; backchannel_token_delivery_mode: required") {
		t.Fatalf("Error = %q", s)
	}
	if strings.Contains(s, "not this") {
		t.Fatalf("Error = %q carries the secret", s)
	}
}
