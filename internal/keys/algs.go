package keys

import (
	"fmt"
	"slices"
	"strings"

	gojose "github.com/go-jose/go-jose/v4"
)

// Algs is the signature algorithm policy of the issuer's keys: which
// algorithm generated keys sign with, and which algorithms a key may sign
// with at all. The zero Algs is the policy of earlier versions: generated
// keys are RSA 2048 signing RS256, and any algorithm a key fits signs.
type Algs struct {
	// Generate is the algorithm of the keys generated on first start and
	// by a rotation: RS256 (RSA 2048) when empty, PS256 (RSA 2048) or
	// ES256 (P-256). A key already generated keeps the algorithm it was
	// generated for.
	Generate string
	// Allowed, when not empty, are the only algorithms a key may sign
	// with: Open refuses a key file whose signing key, or a key set whose
	// current or next signing key, signs with another, and Reload keeps
	// the keys in force rather than read such a key set. An RSA key of a
	// file that names no alg signs with the first RSA algorithm of Allowed
	// (RS256 when Allowed has none).
	Allowed []string
}

// FAPIAlgs is the policy of the FAPI profiles: FAPI 1.0 Advanced §8.6
// lets the authorization server sign with PS256 or ES256 only. Generated
// keys are RSA 2048 signing PS256: the key type of the keys generated
// before (RS256), so clients and tools that handle the issuer's RSA keys
// keep working, and a deployment switching to FAPI changes only the
// padding of its signatures (see docs/fapi.md).
func FAPIAlgs() Algs {
	return Algs{Generate: string(gojose.PS256), Allowed: []string{string(gojose.PS256), string(gojose.ES256)}}
}

// algError is the error of a key whose algorithm may not sign.
type algError struct {
	kid, alg string
	allowed  []string
}

func (e *algError) Error() string {
	return fmt.Sprintf("keys: the signing key %s signs %s, but only %s may sign here (fapi.ciba: FAPI 1.0 Advanced §8.6)",
		e.kid, e.alg, strings.Join(e.allowed, " or "))
}

// rsaDefault is the algorithm of an RSA key that names none.
func (a Algs) rsaDefault() string {
	for _, alg := range a.Allowed {
		if strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS") {
			return alg
		}
	}
	return string(gojose.RS256)
}

// check returns an error naming the key when alg may not sign under a.
func (a Algs) check(kid, alg string) error {
	if len(a.Allowed) == 0 || slices.Contains(a.Allowed, alg) {
		return nil
	}
	return &algError{kid: kid, alg: alg, allowed: a.Allowed}
}
