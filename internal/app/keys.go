package app

import (
	"time"

	"github.com/cibaproxy/cibaproxy/internal/config"
	"github.com/cibaproxy/cibaproxy/internal/keys"
)

// SigningAlgs is the algorithm policy of the issuer's keys: under the
// global FAPI-CIBA switch, PS256 or ES256 only, generated keys PS256 (FAPI
// 1.0 Advanced §8.6, docs/fapi.md); else that of earlier versions (RS256
// generated, a key file's keys as they are). With only per-client
// profile: fapi-ciba, tokens follow the server's key.
func SigningAlgs(cfg *config.Config) keys.Algs {
	if cfg.FAPI.CIBA {
		return keys.FAPIAlgs()
	}
	return keys.Algs{}
}

// RotatePolicy is the rotation of cfg's keys (`cibaproxy keys rotate`):
// old keys stay published for the longest lifetime of the tokens they
// signed; the new key signs with the algorithm of cfg's generated keys
// (SigningAlgs), publishAhead after it is published.
func RotatePolicy(cfg *config.Config, publishAhead time.Duration) keys.RotatePolicy {
	return keys.RotatePolicy{
		PublishAhead: publishAhead,
		Retain:       keys.RetainFor(cfg.Tokens.AccessTokenTTL, cfg.Tokens.IDTokenTTL),
		Alg:          SigningAlgs(cfg).Generate,
	}
}
