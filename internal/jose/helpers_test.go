package jose

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	gojose "github.com/go-jose/go-jose/v4"

	"github.com/cibaproxy/cibaproxy/internal/jose/josetest"
)

// Test keys are generated once per test binary.
var (
	rsaKey1 = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA() })
	rsaKey2 = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA() })
	ecKey1  = sync.OnceValue(func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		return k
	})
)

func mustRSA() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
}

const (
	testIssuer   = "https://ciba.example.com"
	testClient   = "client-1"
	testEndpoint = "https://ciba.example.com/bc-authorize"
	testSecret   = "0123456789abcdef0123456789abcdef-legacy" // ≥ 32 bytes for HS256
)

// testNow is the fixed clock of the tests.
var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func fixedNow() time.Time { return testNow }

// publicJWK returns the public JWK of priv with kid.
func publicJWK(priv crypto.Signer, kid string) gojose.JSONWebKey {
	return gojose.JSONWebKey{Key: priv.Public(), KeyID: kid, Use: "sig"}
}

// clientKeys is the key set of the test client: rsaKey1 as "rsa1", ecKey1 as "ec1".
func clientKeys(t testing.TB) *StaticKeySet {
	t.Helper()
	ks, err := NewStaticKeySet(gojose.JSONWebKeySet{Keys: []gojose.JSONWebKey{
		publicJWK(rsaKey1(), "rsa1"), publicJWK(ecKey1(), "ec1"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

// signer describes how a test token is signed.
type signer struct {
	alg      gojose.SignatureAlgorithm
	key      any // private key or HMAC secret
	kid      string
	embedJWK bool
	headers  map[gojose.HeaderKey]any
}

func rs256() signer { return signer{alg: gojose.RS256, key: rsaKey1(), kid: "rsa1"} }

// signPayload signs payload as a compact JWS.
func signPayload(t testing.TB, s signer, payload []byte) string {
	t.Helper()
	var key any = s.key
	if s.kid != "" {
		key = gojose.JSONWebKey{Key: s.key, KeyID: s.kid}
	}
	opts := &gojose.SignerOptions{EmbedJWK: s.embedJWK}
	for k, v := range s.headers {
		opts.WithHeader(k, v)
	}
	return josetest.Sign(t, gojose.SigningKey{Algorithm: s.alg, Key: key}, opts, payload)
}

// sign signs claims as a compact JWS.
func sign(t testing.TB, s signer, claims map[string]any) string {
	t.Helper()
	return signPayload(t, s, mustJSON(t, claims))
}

// mustJSON is v as JSON.
func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// unsigned returns an "alg":"none" token of claims (RFC 7519 §6).
func unsigned(t testing.TB, claims map[string]any) string {
	t.Helper()
	b, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"none"}`)) + "." + enc(b) + "."
}

// requestClaims are the claims of a valid request object at testNow.
func requestClaims() map[string]any {
	return map[string]any{
		"iss":              testClient,
		"aud":              testIssuer,
		"exp":              testNow.Add(5 * time.Minute).Unix(),
		"iat":              testNow.Unix(),
		"nbf":              testNow.Unix(),
		"jti":              randomID(),
		"scope":            "openid",
		"login_hint":       "alice",
		"requested_expiry": 120,
	}
}

func randomID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// memReplay is an in-test Replay.
type memReplay struct {
	mu   sync.Mutex
	seen map[string]time.Time
}

func newMemReplay() *memReplay { return &memReplay{seen: map[string]time.Time{}} }

func (m *memReplay) Seen(_ context.Context, key string, until time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.seen[key]; ok {
		return ErrReplay
	}
	m.seen[key] = until
	return nil
}

// wantError checks that err is a *ValidationError of kind whose
// description contains each of parts.
func wantError(t testing.TB, err error, kind error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("err = nil, want %v", kind)
	}
	var e *ValidationError
	if !errors.As(err, &e) {
		t.Fatalf("err = %v (%T), want a *ValidationError", err, err)
	}
	if e.Kind != kind || !errors.Is(err, kind) {
		t.Fatalf("kind = %v (%v), want %v", e.Kind, e, kind)
	}
	for _, p := range parts {
		if !strings.Contains(e.Description(), p) {
			t.Fatalf("description %q does not contain %q", e.Description(), p)
		}
	}
}

// noSecretIn checks that a description does not carry the secret.
func noSecretIn(t testing.TB, err error, secrets ...string) {
	t.Helper()
	if err == nil {
		return
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(err.Error(), s) {
			t.Fatalf("error %q carries a secret", err)
		}
	}
}
