package config

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// ProfileFAPICIBA is the value of [Client.Profile] that puts a client under
// the FAPI-CIBA profile (OpenID FAPI: Client Initiated Backchannel
// Authentication Profile), see docs/fapi.md.
const ProfileFAPICIBA = "fapi-ciba"

// FAPI switches the FAPI security profiles on for the whole server.
type FAPI struct {
	// CIBA puts every client under the FAPI-CIBA profile, as if each had
	// profile: fapi-ciba, and makes the discovery document advertise only
	// what the profile allows. Default false.
	CIBA bool `yaml:"ciba"`
}

// FAPIAlgs are the JWS algorithms FAPI allows (FAPI 1.0 Advanced §8.6):
// for request objects and client assertions.
func FAPIAlgs() []string { return []string{"PS256", "ES256"} }

// fapiMethods are the client authentication methods FAPI allows for
// confidential clients (FAPI 1.0 Advanced §5.2.2-14): private_key_jwt,
// and the mutual-TLS ones of RFC 8705 (tls_client_auth,
// self_signed_tls_client_auth).
var fapiMethods = []string{AuthPrivateKeyJWT, "tls_client_auth", "self_signed_tls_client_auth"}

// FAPIAuthMethods are the client authentication methods a FAPI client may
// use among those cibaproxy supports.
func FAPIAuthMethods() []string {
	var out []string
	for _, m := range fapiMethods {
		if slices.Contains(authMethods, m) {
			out = append(out, m)
		}
	}
	return out
}

// fapiSigningAlg is the algorithm the signing key signs with under
// fapi.ciba: the JWK's alg if it has one, else PS256 for RSA and the
// curve's ES algorithm for EC (as internal/keys chooses).
func fapiSigningAlg(key crypto.Signer, alg string) string {
	if alg != "" {
		return alg
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		return "PS256"
	case *ecdsa.PrivateKey:
		return "ES" + strconv.Itoa(map[int]int{256: 256, 384: 384, 521: 512}[k.Curve.Params().BitSize])
	}
	return fmt.Sprintf("%T", key)
}

// IsFAPI reports whether client cl is under the FAPI-CIBA profile: the
// global fapi.ciba switch is on, or the client has profile: fapi-ciba.
func (c *Config) IsFAPI(cl *Client) bool {
	return c.FAPI.CIBA || cl.Profile == ProfileFAPICIBA
}

// checkFAPI checks the profile of every client, and the FAPI-CIBA rules of
// the clients under it. The rules the other checks already enforce for
// every client (no client_secret without a client_secret_* method, no HS256
// switch with an asymmetric request-signing alg) are not repeated.
func (v *validator) checkFAPI(c *Config) {
	if c.FAPI.CIBA && c.Tokens.SigningKey != nil {
		// FAPI 1.0 Advanced §8.6: the server signs its ID and access
		// tokens with PS256 or ES256. An RSA key that names no alg signs
		// PS256 under the switch (internal/keys); generated keys are
		// checked when the server starts.
		if alg := fapiSigningAlg(c.Tokens.SigningKey, c.Tokens.SigningKeyAlg); !slices.Contains(FAPIAlgs(), alg) {
			v.fail("tokens.signing_key_file", "%s: this key signs %s, but under fapi.ciba ID and access tokens must be signed with PS256 or ES256 (FAPI 1.0 Advanced §8.6): use an RSA key (alg PS256, or no alg) or an EC P-256 key",
				c.Tokens.SigningKeyFile, alg)
		}
	}
	for i := range c.Clients {
		cl := &c.Clients[i]
		at := func(key string) string { return joinKey(joinIndex("clients", i), key) }
		if cl.Profile != "" && cl.Profile != ProfileFAPICIBA {
			v.fail(at("profile"), "must be empty or %s, got %q", ProfileFAPICIBA, cl.Profile)
			continue
		}
		if !c.IsFAPI(cl) {
			continue
		}
		// FAPI-CIBA §5.2.2: signed authentication requests (CIBA Core
		// §7.1.1), signed with PS256 or ES256 (FAPI 1.0 Advanced §8.6).
		if alg := cl.RequestSigningAlg; !slices.Contains(FAPIAlgs(), alg) {
			if alg == "" {
				v.fail(at("backchannel_authentication_request_signing_alg"), "required by the FAPI-CIBA profile, which accepts only signed authentication requests: PS256 or ES256")
			} else {
				v.fail(at("backchannel_authentication_request_signing_alg"), "must be PS256 or ES256 under the FAPI-CIBA profile (FAPI 1.0 Advanced §8.6), got %q", alg)
			}
		}
		// FAPI-CIBA §5.2.2: confidential clients only; FAPI 1.0 Advanced
		// §5.2.2-14: authenticated with private_key_jwt or mutual TLS.
		allowed := FAPIAuthMethods()
		for j, m := range cl.TokenEndpointAuthMethods {
			if !slices.Contains(allowed, m) {
				v.fail(joinIndex(at("token_endpoint_auth_methods"), j), "%q is not allowed under the FAPI-CIBA profile, which asks for %s (FAPI 1.0 Advanced §5.2.2-14)", m, strings.Join(allowed, " or "))
			}
		}
		// FAPI-CIBA §5.2.2: shall not support CIBA push mode.
		if cl.DeliveryMode == DeliveryPush {
			v.fail(at("backchannel_token_delivery_mode"), "push is not allowed under the FAPI-CIBA profile (FAPI-CIBA §5.2.2); use poll or ping")
		}
	}
}
