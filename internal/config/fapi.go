package config

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"fmt"
	"slices"
	"strconv"

	"github.com/cibaproxy/cibaproxy/internal/clientmeta"
)

// ProfileFAPICIBA is the value of [Client.Profile] that puts a client under
// the FAPI-CIBA profile (OpenID FAPI: Client Initiated Backchannel
// Authentication Profile), see docs/fapi.md.
const ProfileFAPICIBA = clientmeta.ProfileFAPICIBA

// FAPI switches the FAPI security profiles on for the whole server.
type FAPI struct {
	// CIBA puts every client under the FAPI-CIBA profile, as if each had
	// profile: fapi-ciba, and makes the discovery document advertise only
	// what the profile allows. Default false.
	CIBA bool `yaml:"ciba"`
	// SenderConstrainedTokens makes every FAPI-CIBA client (fapi.ciba or
	// profile: fapi-ciba) have sender-constrained access tokens (FAPI 1.0
	// Advanced §5.2.2-5; FAPI 2.0 Security Profile §5.3.2.1): bound to its
	// certificate (mutual TLS authentication, or
	// tls_client_certificate_bound_access_tokens) or to a DPoP key
	// (dpop_bound_access_tokens). A FAPI client with neither is refused.
	// Default false. The local upstream only: the others' tokens are the
	// identity provider's, which cibaproxy cannot bind.
	SenderConstrainedTokens bool `yaml:"sender_constrained_tokens"`
}

// FAPIAlgs are the JWS algorithms FAPI allows (FAPI 1.0 Advanced §8.6):
// for request objects and client assertions.
func FAPIAlgs() []string { return clientmeta.FAPIAlgs() }

// FAPIAuthMethods are the client authentication methods a FAPI client may
// use: private_key_jwt, and the mutual-TLS ones of RFC 8705
// (FAPI 1.0 Advanced §5.2.2-14).
func FAPIAuthMethods() []string { return clientmeta.FAPIMethods() }

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

// checkFAPI checks the server's signing key under fapi.ciba. The FAPI-CIBA
// rules of each client are clientmeta's (see checkClient).
func (v *validator) checkFAPI(c *Config) {
	if c.FAPI.SenderConstrainedTokens && c.Upstream.Type != UpstreamLocal {
		v.fail("fapi.sender_constrained_tokens", "not possible with the %s upstream: its access tokens are the identity provider's, which cibaproxy cannot bind to a certificate or a DPoP key; have the provider bind them, or remove this setting", c.Upstream.Type)
	}
	if !c.FAPI.CIBA || c.Tokens.SigningKey == nil {
		return
	}
	// FAPI 1.0 Advanced §8.6: the server signs its ID and access tokens
	// with PS256 or ES256. An RSA key that names no alg signs PS256 under
	// the switch (internal/keys); generated keys are checked when the
	// server starts.
	if alg := fapiSigningAlg(c.Tokens.SigningKey, c.Tokens.SigningKeyAlg); !slices.Contains(FAPIAlgs(), alg) {
		v.fail("tokens.signing_key_file", "%s: this key signs %s, but under fapi.ciba ID and access tokens must be signed with PS256 or ES256 (FAPI 1.0 Advanced §8.6): use an RSA key (alg PS256, or no alg) or an EC P-256 key",
			c.Tokens.SigningKeyFile, alg)
	}
}
