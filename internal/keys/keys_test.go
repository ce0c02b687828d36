package keys

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gojose "github.com/go-jose/go-jose/v4"

	"github.com/cibaproxy/cibaproxy/internal/fault"
)

var (
	rsaKey = sync.OnceValue(func() *rsa.PrivateKey {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		return k
	})
	ecKey = sync.OnceValue(func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		return k
	})
)

// rfc7638KID computes the RFC 7638 §3 thumbprint of an RSA public key by
// the letter of the RFC: SHA-256 of {"e","kty","n"} in lexical order.
func rfc7638KID(pub *rsa.PublicKey) string {
	b64 := base64.RawURLEncoding.EncodeToString
	e := big2bytes(pub.E)
	canon := `{"e":"` + b64(e) + `","kty":"RSA","n":"` + b64(pub.N.Bytes()) + `"}`
	sum := sha256.Sum256([]byte(canon))
	return b64(sum[:])
}

func big2bytes(e int) []byte {
	var out []byte
	for ; e > 0; e >>= 8 {
		out = append([]byte{byte(e)}, out...)
	}
	return out
}

func TestManagerSign(t *testing.T) {
	m, err := New(rsaKey(), ecKey())
	if err != nil {
		t.Fatal(err)
	}
	if m.Alg() != "RS256" {
		t.Fatalf("Alg = %s, want RS256", m.Alg())
	}
	if want := rfc7638KID(&rsaKey().PublicKey); m.KeyID() != want {
		t.Fatalf("kid = %s, want the RFC 7638 thumbprint %s", m.KeyID(), want)
	}
	raw, err := m.Sign(map[string]any{"iss": "https://issuer", "sub": "alice"}, "at+jwt")
	if err != nil {
		t.Fatal(err)
	}
	jws, err := gojose.ParseSignedCompact(raw, []gojose.SignatureAlgorithm{gojose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	h := jws.Signatures[0].Header
	if h.KeyID != m.KeyID() || h.ExtraHeaders["typ"] != "at+jwt" {
		t.Fatalf("header = %+v", h)
	}
	payload, err := m.KeySet().Verify(t.Context(), raw)
	if err != nil {
		t.Fatalf("own key set: %v", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil || claims["sub"] != "alice" {
		t.Fatalf("claims = %v, %v", claims, err)
	}
	t.Run("typ is required", func(t *testing.T) {
		// Every JWT the issuer signs names its role (RFC 8725 §3.11), so
		// none can be replayed in another.
		if raw, err := m.Sign(struct {
			Sub string `json:"sub"`
		}{"bob"}, ""); err == nil {
			t.Fatalf("signed without typ: %s", raw)
		}
	})
	t.Run("claims that are not an object are refused", func(t *testing.T) {
		if _, err := m.Sign([]string{"x"}, "JWT"); err == nil {
			t.Fatal("signed an array")
		}
	})
}

func TestPublicJWKS(t *testing.T) {
	m, err := New(rsaKey(), ecKey())
	if err != nil {
		t.Fatal(err)
	}
	set := m.PublicJWKS()
	if len(set.Keys) != 2 {
		t.Fatalf("%d keys, want 2", len(set.Keys))
	}
	for i, want := range []string{"RS256", "ES256"} {
		k := set.Keys[i]
		if !k.IsPublic() || k.KeyID == "" || k.Algorithm != want || k.Use != "sig" {
			t.Fatalf("key %d = %+v", i, k)
		}
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	for _, private := range []string{`"d"`, `"p"`, `"q"`, `"dp"`, `"dq"`, `"qi"`} {
		if strings.Contains(string(b), private+":") {
			t.Fatalf("the published JWKS carries the private member %s: %s", private, b)
		}
	}
	set.Keys[0].KeyID = "changed"
	if m.PublicJWKS().Keys[0].KeyID == "changed" {
		t.Fatal("PublicJWKS exposes the manager's own slice")
	}
}

func pemOf(t *testing.T, typ string, der []byte) []byte {
	t.Helper()
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func TestParse(t *testing.T) {
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8 := func(k any) []byte { b, err := x509.MarshalPKCS8PrivateKey(k); must(t, err); return b }
	sec1 := func(k *ecdsa.PrivateKey) []byte { b, err := x509.MarshalECPrivateKey(k); must(t, err); return b }
	jwk := func(k gojose.JSONWebKey) []byte { b, err := json.Marshal(k); must(t, err); return b }
	ecParams := []byte("-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n")

	tests := []struct {
		name string
		in   []byte
		alg  string // "" means refused
	}{
		{"PKCS#1 RSA PEM signs RS256", pemOf(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey())), "RS256"},
		{"PKCS#8 RSA PEM signs RS256", pemOf(t, "PRIVATE KEY", pkcs8(rsaKey())), "RS256"},
		{"PKCS#8 EC P-256 PEM signs ES256", pemOf(t, "PRIVATE KEY", pkcs8(ecKey())), "ES256"},
		{"SEC1 EC PEM signs ES256", pemOf(t, "EC PRIVATE KEY", sec1(ecKey())), "ES256"},
		{"SEC1 EC PEM after EC PARAMETERS (openssl ecparam -genkey)", append(ecParams, pemOf(t, "EC PRIVATE KEY", sec1(ecKey()))...), "ES256"},
		{"EC P-384 signs ES384", pemOf(t, "EC PRIVATE KEY", sec1(p384)), "ES384"},
		{"a private JWK", jwk(gojose.JSONWebKey{Key: ecKey()}), "ES256"},
		{"a private JWK asking for PS256", jwk(gojose.JSONWebKey{Key: rsaKey(), Algorithm: "PS256"}), "PS256"},
		{"a JWK Set of private keys", []byte(`{"keys":[` + string(jwk(gojose.JSONWebKey{Key: rsaKey()})) + `]}`), "RS256"},
		{"a public key PEM is refused", pemOf(t, "PUBLIC KEY", ok(x509.MarshalPKIXPublicKey(rsaKey().Public()))), ""},
		{"a public JWK is refused", jwk(gojose.JSONWebKey{Key: rsaKey().Public()}), ""},
		{"an RSA key under 2048 bits is refused", pemOf(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(small)), ""},
		{"an alg that does not fit the key is refused", jwk(gojose.JSONWebKey{Key: ecKey(), Algorithm: "RS256"}), ""},
		{"an encryption key is refused", jwk(gojose.JSONWebKey{Key: rsaKey(), Use: "enc"}), ""},
		{"an encrypted PEM is refused", []byte("-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00000000000000000000000000000000\n\nAAAA\n-----END RSA PRIVATE KEY-----\n"), ""},
		{"the same key twice is refused", append(pemOf(t, "PRIVATE KEY", pkcs8(rsaKey())), pemOf(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey()))...), ""},
		{"garbage is refused", []byte("hello"), ""},
		{"an empty JWK Set is refused", []byte(`{"keys":[]}`), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Parse(tt.in)
			if tt.alg == "" {
				if err == nil {
					t.Fatalf("accepted, alg %s", m.Alg())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.Alg() != tt.alg {
				t.Fatalf("Alg = %s, want %s", m.Alg(), tt.alg)
			}
			raw, err := m.Sign(map[string]any{"x": 1}, "JWT")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := m.KeySet().Verify(t.Context(), raw); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// recordStore is a Records kept in memory.
type recordStore struct {
	mu      sync.Mutex
	records map[string][]byte
	puts    int
	// beforePut runs before PutRecord stores, to simulate another instance
	// that stores first.
	beforePut func()
	err       error
}

func newStore() *recordStore { return &recordStore{records: map[string][]byte{}} }

func (s *recordStore) GetRecord(_ context.Context, kind, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, s.err
	}
	b, ok := s.records[kind+"/"+key]
	if !ok {
		return nil, fault.ErrNotFound
	}
	return b, nil
}

func (s *recordStore) PutRecord(_ context.Context, kind, key string, value []byte, ttl time.Duration) error {
	if s.beforePut != nil {
		s.beforePut()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if ttl != 0 {
		return errors.New("the signing key must be stored without expiry")
	}
	if _, ok := s.records[kind+"/"+key]; ok {
		return fault.ErrExists
	}
	s.puts++
	s.records[kind+"/"+key] = value
	return nil
}

func TestLoadOrCreate(t *testing.T) {
	ctx := context.Background()
	t.Run("a key is generated once and shared through the store", func(t *testing.T) {
		st := newStore()
		a, err := LoadOrCreate(ctx, st, "")
		if err != nil {
			t.Fatal(err)
		}
		b, err := LoadOrCreate(ctx, st, "")
		if err != nil {
			t.Fatal(err)
		}
		if a.KeyID() != b.KeyID() || a.Alg() != "RS256" {
			t.Fatalf("kids %s and %s, alg %s", a.KeyID(), b.KeyID(), a.Alg())
		}
		if st.puts != 1 {
			t.Fatalf("%d puts, want 1", st.puts)
		}
	})
	t.Run("when another instance stores first, its key is used", func(t *testing.T) {
		st := newStore()
		other, err := New(ecKey())
		if err != nil {
			t.Fatal(err)
		}
		otherJWK, _ := json.Marshal(other.keys[0])
		st.beforePut = func() { st.records[RecordKind+"/"+RecordKey] = otherJWK }
		m, err := LoadOrCreate(ctx, st, "")
		if err != nil {
			t.Fatal(err)
		}
		if m.KeyID() != other.KeyID() {
			t.Fatalf("kid = %s, want the other instance's %s", m.KeyID(), other.KeyID())
		}
	})
	t.Run("a store that is down is an error", func(t *testing.T) {
		st := newStore()
		st.err = fault.ErrUnavailable
		if _, err := LoadOrCreate(ctx, st, ""); !errors.Is(err, fault.ErrUnavailable) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("a key file wins over the store", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "key.pem")
		must(t, os.WriteFile(file, pemOf(t, "EC PRIVATE KEY", ok(x509.MarshalECPrivateKey(ecKey()))), 0o600))
		st := newStore()
		m, err := LoadOrCreate(ctx, st, file)
		if err != nil {
			t.Fatal(err)
		}
		if m.Alg() != "ES256" || st.puts != 0 {
			t.Fatalf("alg %s, %d puts", m.Alg(), st.puts)
		}
	})
	t.Run("a missing key file is an error", func(t *testing.T) {
		if _, err := LoadOrCreate(ctx, newStore(), filepath.Join(t.TempDir(), "nope.pem")); err == nil {
			t.Fatal("no error")
		}
	})
	t.Run("neither file nor store is an error", func(t *testing.T) {
		if _, err := LoadOrCreate(ctx, nil, ""); err == nil {
			t.Fatal("no error")
		}
	})
}

func TestLeftHash(t *testing.T) {
	const v = "dNZX1hEZ9wBCzNL40Upu646bdzQA"
	left := func(sum []byte) string { return base64.RawURLEncoding.EncodeToString(sum[:len(sum)/2]) }
	s256 := sha256.Sum256([]byte(v))
	s384 := sha512.Sum384([]byte(v))
	s512 := sha512.Sum512([]byte(v))
	for _, tt := range []struct{ alg, want string }{
		{"RS256", left(s256[:])}, {"PS256", left(s256[:])}, {"ES256", left(s256[:])}, {"HS256", left(s256[:])},
		{"RS384", left(s384[:])}, {"ES384", left(s384[:])},
		{"RS512", left(s512[:])}, {"ES512", left(s512[:])}, {"EdDSA", left(s512[:])},
		{"none", ""}, {"", ""},
	} {
		if got := LeftHash(tt.alg, v); got != tt.want {
			t.Errorf("LeftHash(%s) = %q, want %q", tt.alg, got, tt.want)
		}
	}
	if len(LeftHash("RS256", v)) != 22 {
		t.Errorf("an RS256 left hash is 128 bits, 22 base64url characters")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// ok returns v, panicking on err; for test fixtures only.
func ok[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// BenchmarkSignStoredKey signs with the RSA key as a restarted instance has
// it: generated once, kept in the store as a JWK and parsed back from there.
func BenchmarkSignStoredKey(b *testing.B) {
	m, err := LoadOrCreate(context.Background(), newStore(), "")
	if err != nil {
		b.Fatal(err)
	}
	claims := map[string]any{"iss": "https://op.example", "sub": "alice", "aud": "bench", "exp": 2000000000}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Sign(claims, "JWT"); err != nil {
			b.Fatal(err)
		}
	}
}

// TestSignStoredKeyPrecomputed checks that an RSA key read back from the
// store signs as cheaply as a freshly generated one: its precomputed form is
// built once at load, not again at each signature (which shows as the
// allocations of that rebuild).
func TestSignStoredKeyPrecomputed(t *testing.T) {
	stored, err := LoadOrCreate(context.Background(), newStore(), "")
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := New(rsaKey())
	if err != nil {
		t.Fatal(err)
	}
	claims := map[string]any{"iss": "https://op.example", "sub": "alice"}
	allocs := func(m *Manager) float64 {
		return testing.AllocsPerRun(5, func() {
			if _, err := m.Sign(claims, "JWT"); err != nil {
				t.Fatal(err)
			}
		})
	}
	if s, f := allocs(stored), allocs(fresh); s > f+5 {
		t.Fatalf("a signature with the stored key costs %.0f allocations, with a fresh key %.0f: the stored key is rebuilt at each signature", s, f)
	}
}
