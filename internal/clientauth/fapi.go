package clientauth

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/jose"
)

// FAPIMaxLifetime bounds a FAPI client's request objects: exp at most this
// long after nbf, and nbf at most this old (FAPI 1.0 Advanced §5.2.2-13,
// which FAPI-CIBA §5.2.2 builds on).
const FAPIMaxLifetime = 60 * time.Minute

// FAPIAlgs are the JWS algorithms a FAPI client may sign its request
// objects and client assertions with (FAPI 1.0 Advanced §8.6).
func FAPIAlgs() []string { return []string{"PS256", "ES256"} }

// fapiMethods are the authentication methods of a FAPI confidential client
// (FAPI 1.0 Advanced §5.2.2-14). The mutual-TLS ones are listed so that a
// registration using them is accepted once clientauth supports them.
var fapiMethods = []string{MethodPrivateKeyJWT, "tls_client_auth", "self_signed_tls_client_auth"}

// checkFAPI checks the options of a client under the FAPI-CIBA profile:
// signed requests with PS256 or ES256 (FAPI-CIBA §5.2.2, FAPI 1.0 Advanced
// §8.6), no HS256 switch and no client secret, only private_key_jwt or
// mutual TLS (FAPI 1.0 Advanced §5.2.2-14), and no push mode (FAPI-CIBA
// §5.2.2).
func checkFAPI(opts Options) error {
	if !slices.Contains(FAPIAlgs(), opts.RequestObjectAlg) {
		return fmt.Errorf("FAPI-CIBA: request object alg must be PS256 or ES256, got %q", opts.RequestObjectAlg)
	}
	if opts.AllowHS256RequestObject {
		return errors.New("FAPI-CIBA: HS256 request objects are not allowed")
	}
	if opts.Secret != "" || opts.SecretHash != "" {
		return errors.New("FAPI-CIBA: a client secret is not allowed (private_key_jwt or mutual TLS only)")
	}
	if len(opts.Methods) == 0 {
		return errors.New("FAPI-CIBA: the authentication methods must be listed (private_key_jwt or mutual TLS)")
	}
	for _, m := range opts.Methods {
		if !slices.Contains(fapiMethods, m) {
			return fmt.Errorf("FAPI-CIBA: authentication method %q is not allowed (private_key_jwt or mutual TLS only)", m)
		}
	}
	if opts.Client.Mode == ciba.ModePush {
		return errors.New("FAPI-CIBA: push mode is not allowed")
	}
	return nil
}

// FAPI reports whether the client is under the FAPI-CIBA profile.
func (r *Registration) FAPI() bool { return r.fapi }

// applyFAPI tightens a request-object policy for a FAPI client: the
// lifetime bound of FAPI 1.0 Advanced §5.2.2-13 (unless base is stricter).
// The algorithms need no change: the client's one registered alg is PS256
// or ES256 (checkFAPI).
func (r *Registration) applyFAPI(p *jose.RequestObjectPolicy) {
	if r.fapi && (p.MaxLifetime <= 0 || p.MaxLifetime > FAPIMaxLifetime) {
		p.MaxLifetime = FAPIMaxLifetime
	}
}

// applyFAPIAssertion restricts the client assertions of a FAPI client to
// PS256 and ES256 (FAPI 1.0 Advanced §8.6).
func (r *Registration) applyFAPIAssertion(p *jose.AssertionPolicy) {
	if r != nil && r.fapi {
		p.Algs = FAPIAlgs()
	}
}
