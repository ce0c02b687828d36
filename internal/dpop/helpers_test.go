package dpop

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"sync"
	"testing"
	"time"

	gojose "github.com/go-jose/go-jose/v4"

	"github.com/cibaproxy/cibaproxy/internal/jose/josetest"
)

// testNow is the fixed clock of the tests.
var testNow = time.Unix(1_800_000_000, 0)

const testURL = "https://proxy.example/token"

// memReplay is a Replay in memory, as the store adapter behaves.
type memReplay struct {
	mu   sync.Mutex
	keys map[string]time.Time
	err  error
}

func (m *memReplay) Seen(_ context.Context, key string, until time.Time) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return false, m.err
	}
	if m.keys == nil {
		m.keys = map[string]time.Time{}
	}
	if _, ok := m.keys[key]; ok {
		return true, nil
	}
	m.keys[key] = until
	return false, nil
}

// newTestVerifier returns a verifier on the fixed clock, with cfg's other
// fields.
func newTestVerifier(t testing.TB, cfg Config) *Verifier {
	t.Helper()
	if cfg.Replay == nil {
		cfg.Replay = &memReplay{}
	}
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return testNow }
	}
	v, err := NewVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

var (
	keysOnce sync.Once
	ecKey    *ecdsa.PrivateKey
	ecKey2   *ecdsa.PrivateKey
	rsaKey   *rsa.PrivateKey
	edKey    ed25519.PrivateKey
)

func keys(t testing.TB) {
	t.Helper()
	keysOnce.Do(func() {
		var err error
		if ecKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
		if ecKey2, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
		if rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if _, edKey, err = ed25519.GenerateKey(rand.Reader); err != nil {
			panic(err)
		}
	})
}

// proof is a DPoP proof to build: header fields and claims.
type proof struct {
	alg     gojose.SignatureAlgorithm
	key     any // the signing key
	jwk     any // the jwk header's value; nil: the public key of key; "-": none
	typ     any // nil: "dpop+jwt"; "-": none
	claims  map[string]any
	headers map[gojose.HeaderKey]any
}

// goodClaims are the claims of a proof for a POST to testURL at testNow.
func goodClaims(jti string) map[string]any {
	return map[string]any{"jti": jti, "htm": "POST", "htu": testURL, "iat": testNow.Unix()}
}

func publicOf(k any) any {
	switch k := k.(type) {
	case *ecdsa.PrivateKey:
		return k.Public()
	case *rsa.PrivateKey:
		return k.Public()
	case ed25519.PrivateKey:
		return k.Public()
	}
	return nil
}

// sign returns p as a compact JWS.
func (p proof) sign(t testing.TB) string {
	t.Helper()
	keys(t)
	if p.alg == "" {
		p.alg, p.key = gojose.ES256, ecKey
	}
	opts := &gojose.SignerOptions{ExtraHeaders: map[gojose.HeaderKey]any{}}
	switch p.typ {
	case nil:
		opts.ExtraHeaders["typ"] = "dpop+jwt"
	case "-":
	default:
		opts.ExtraHeaders["typ"] = p.typ
	}
	switch p.jwk {
	case nil:
		opts.ExtraHeaders["jwk"] = gojose.JSONWebKey{Key: publicOf(p.key)}
	case "-":
	default:
		opts.ExtraHeaders["jwk"] = p.jwk
	}
	for k, v := range p.headers {
		opts.ExtraHeaders[k] = v
	}
	return josetest.SignClaims(t, gojose.SigningKey{Algorithm: p.alg, Key: p.key}, opts, p.claims)
}

// unsigned returns an alg "none" JWT with a jwk header and claims.
func unsigned(t testing.TB, claims map[string]any) string {
	t.Helper()
	keys(t)
	jwk, err := json.Marshal(gojose.JSONWebKey{Key: ecKey.Public()})
	if err != nil {
		t.Fatal(err)
	}
	h, _ := json.Marshal(map[string]any{"alg": "none", "typ": "dpop+jwt", "jwk": json.RawMessage(jwk)})
	c, _ := json.Marshal(claims)
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c) + "."
}
