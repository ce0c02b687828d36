package clientauth

import (
	"time"

	"github.com/cibaproxy/cibaproxy/internal/clientmeta"
	"github.com/cibaproxy/cibaproxy/internal/jose"
)

// FAPIMaxLifetime bounds a FAPI client's request objects: exp at most this
// long after nbf, and nbf at most this old (FAPI 1.0 Advanced §5.2.2-13,
// which FAPI-CIBA §5.2.2 builds on).
const FAPIMaxLifetime = 60 * time.Minute

// FAPIAlgs are the JWS algorithms a FAPI client may sign its request
// objects and client assertions with (FAPI 1.0 Advanced §8.6).
func FAPIAlgs() []string { return clientmeta.FAPIAlgs() }

// FAPI reports whether the client is under the FAPI-CIBA profile.
func (r *Registration) FAPI() bool { return r.fapi }

// applyFAPI tightens a request-object policy for a FAPI client: the
// lifetime bound of FAPI 1.0 Advanced §5.2.2-13 (unless base is stricter).
// The algorithms need no change: the client's one registered alg is PS256
// or ES256 (clientmeta.Check).
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
