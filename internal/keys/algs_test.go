package keys

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	gojose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// signedAlg signs with l, checks that the token verifies against l's
// published keys, and returns the alg of its header.
func signedAlg(t *testing.T, l *Live) string {
	t.Helper()
	raw, err := l.Sign(map[string]any{"sub": "x"}, "JWT")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.ParseSigned(raw, []gojose.SignatureAlgorithm{gojose.RS256, gojose.PS256, gojose.ES256, gojose.ES384})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.KeySet().Verify(t.Context(), raw); err != nil {
		t.Fatalf("a token just signed does not verify: %v", err)
	}
	return tok.Headers[0].Algorithm
}

// storedAlg is the alg of the generated key (generation 0) in st.
func storedAlg(t *testing.T, st *recordStore) (alg string, rsa bool) {
	t.Helper()
	b, err := st.GetRecord(t.Context(), RecordKind, RecordKey)
	if err != nil {
		t.Fatal(err)
	}
	var k gojose.JSONWebKey
	must(t, json.Unmarshal(b, &k))
	_, isEC := k.Key.(*ecdsa.PrivateKey)
	return k.Algorithm, !isEC
}

// FAPI 1.0 Advanced §8.6: the authorization server shall use PS256 or
// ES256 for its signatures (ID tokens, JWT access tokens).
func TestFAPIAlgs(t *testing.T) {
	ctx := t.Context()
	fapi := FAPIAlgs()
	p := RotatePolicy{PublishAhead: DefaultPublishAhead, Retain: time.Hour}

	t.Run("a key generated under FAPI is RSA 2048 signing PS256", func(t *testing.T) {
		st := newStore()
		l, err := Open(ctx, st, "", nil, fapi)
		if err != nil {
			t.Fatal(err)
		}
		if got := signedAlg(t, l); got != "PS256" || l.Alg() != "PS256" {
			t.Errorf("signed %s (Alg %s), want PS256", got, l.Alg())
		}
		if alg, isRSA := storedAlg(t, st); alg != "PS256" || !isRSA {
			t.Errorf("stored key: alg %q RSA %v", alg, isRSA)
		}
		if got := l.Algs(); !slices.Equal(got, []string{"PS256"}) {
			t.Errorf("Algs = %v, want [PS256]", got)
		}
	})
	t.Run("ES256 may be chosen for generated keys", func(t *testing.T) {
		st := newStore()
		l, err := Open(ctx, st, "", nil, Algs{Generate: "ES256", Allowed: fapi.Allowed})
		if err != nil {
			t.Fatal(err)
		}
		if got := signedAlg(t, l); got != "ES256" {
			t.Errorf("signed %s, want ES256", got)
		}
		if alg, isRSA := storedAlg(t, st); alg != "ES256" || isRSA {
			t.Errorf("stored key: alg %q RSA %v", alg, isRSA)
		}
	})
	t.Run("an RS256 key in the store keeps RS256 without FAPI", func(t *testing.T) {
		st := newStore()
		if _, err := Open(ctx, st, "", nil, Algs{}); err != nil {
			t.Fatal(err)
		}
		l, err := Open(ctx, st, "", nil, Algs{})
		if err != nil {
			t.Fatal(err)
		}
		if got := signedAlg(t, l); got != "RS256" {
			t.Errorf("signed %s, want RS256", got)
		}
		if got := l.Algs(); !slices.Equal(got, []string{"RS256"}) {
			t.Errorf("Algs = %v, want [RS256]", got)
		}
	})
	t.Run("switching to FAPI: an RS256 key in force refuses the start until keys rotate", func(t *testing.T) {
		st := newStore()
		clk := &clock{t: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
		if _, err := Open(ctx, st, "", clk.now, Algs{}); err != nil { // the deployment before the switch
			t.Fatal(err)
		}
		_, err := Open(ctx, st, "", clk.now, fapi)
		if err == nil || !strings.Contains(err.Error(), "signs RS256") || !strings.Contains(err.Error(), "cibaproxy keys rotate") {
			t.Fatalf("got %v, want a refusal naming RS256 and keys rotate", err)
		}
		if alg, _ := storedAlg(t, st); alg != "RS256" {
			t.Errorf("the refused start changed the stored key to %q", alg)
		}
		rot, err := Rotate(ctx, st, RotatePolicy{PublishAhead: p.PublishAhead, Retain: p.Retain, Alg: fapi.Generate}, clk.now())
		if err != nil {
			t.Fatal(err)
		}
		if rot.New.Alg != "PS256" {
			t.Errorf("rotated to %s, want PS256", rot.New.Alg)
		}
		l, err := Open(ctx, st, "", clk.now, fapi)
		if err != nil {
			t.Fatalf("start after keys rotate: %v", err)
		}
		// The RS256 key signs until the PS256 key takes over, which
		// discovery says.
		if got := l.Algs(); !slices.Equal(got, []string{"RS256", "PS256"}) {
			t.Errorf("Algs before the switch = %v, want [RS256 PS256]", got)
		}
		clk.set(rot.New.NotBefore)
		if got := signedAlg(t, l); got != "PS256" {
			t.Errorf("signed %s after the switch, want PS256", got)
		}
		if got := l.Algs(); !slices.Equal(got, []string{"PS256"}) {
			t.Errorf("Algs after the switch = %v, want [PS256]", got)
		}
	})
	t.Run("a running FAPI server keeps its keys rather than read an RS256 rotation", func(t *testing.T) {
		st := newStore()
		clk := &clock{t: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
		l, err := Open(ctx, st, "", clk.now, fapi)
		if err != nil {
			t.Fatal(err)
		}
		before := kids(l)
		if _, err := Rotate(ctx, st, p, clk.now()); err != nil { // no Alg: RS256
			t.Fatal(err)
		}
		if err := l.Reload(ctx); err == nil || !strings.Contains(err.Error(), "signs RS256") {
			t.Errorf("Reload: got %v, want a refusal of the RS256 key", err)
		}
		clk.set(clk.now().Add(p.PublishAhead + time.Minute))
		if got := kids(l); !slices.Equal(got, before) {
			t.Errorf("published %v, want %v", got, before)
		}
		if got := signedAlg(t, l); got != "PS256" {
			t.Errorf("signed %s, want PS256", got)
		}
	})
	t.Run("a FAPI server rotates to PS256, and refuses to rotate to RS256", func(t *testing.T) {
		st := newStore()
		l, err := Open(ctx, st, "", nil, fapi)
		if err != nil {
			t.Fatal(err)
		}
		rot, err := l.Rotate(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if rot.New.Alg != "PS256" {
			t.Errorf("rotated to %s, want PS256", rot.New.Alg)
		}
		if _, err := l.Rotate(ctx, RotatePolicy{PublishAhead: p.PublishAhead, Retain: p.Retain, Alg: "RS256"}); err == nil {
			t.Error("rotated to RS256 under FAPI")
		}
	})
	t.Run("no key of an unknown algorithm is generated", func(t *testing.T) {
		st := newStore()
		if _, err := Open(ctx, st, "", nil, Algs{}); err != nil {
			t.Fatal(err)
		}
		if _, err := Rotate(ctx, st, RotatePolicy{PublishAhead: p.PublishAhead, Retain: p.Retain, Alg: "HS256"}, time.Now()); err == nil {
			t.Error("rotated to HS256")
		}
	})

	// Key files under FAPI: the first key signs and must be PS256 or
	// ES256; the others are only published.
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaPEM := pemOf(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey()))
	jwkWith := func(alg string) []byte {
		b, err := json.Marshal(gojose.JSONWebKey{Key: rsaKey(), Algorithm: alg})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tt := range []struct {
		name    string
		file    []byte
		wantAlg string // empty: refused
	}{
		{"an RSA PEM key without alg signs PS256", rsaPEM, "PS256"},
		{"an RSA JWK with alg PS256 signs PS256", jwkWith("PS256"), "PS256"},
		{"an EC P-256 key signs ES256", pemOf(t, "EC PRIVATE KEY", ok(x509.MarshalECPrivateKey(ecKey()))), "ES256"},
		{"an RSA JWK with alg RS256 is refused", jwkWith("RS256"), ""},
		{"an EC P-384 key (ES384) is refused", pemOf(t, "EC PRIVATE KEY", ok(x509.MarshalECPrivateKey(p384))), ""},
		{"an RS256 key after the signing key is published only", append(append(pemOf(t, "EC PRIVATE KEY", ok(x509.MarshalECPrivateKey(ecKey()))), '\n'), rsaPEM...), "ES256"},
	} {
		t.Run("key file: "+tt.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "key")
			must(t, os.WriteFile(file, tt.file, 0o600))
			l, err := Open(ctx, nil, file, nil, fapi)
			if tt.wantAlg == "" {
				if err == nil || !strings.Contains(err.Error(), "only PS256 or ES256 may sign") {
					t.Fatalf("got %v, want a refusal", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := signedAlg(t, l); got != tt.wantAlg {
				t.Errorf("signed %s, want %s", got, tt.wantAlg)
			}
		})
	}
	t.Run("key file without FAPI: an RSA PEM key still signs RS256", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "key")
		must(t, os.WriteFile(file, rsaPEM, 0o600))
		l, err := Open(ctx, nil, file, nil, Algs{})
		if err != nil {
			t.Fatal(err)
		}
		if got := signedAlg(t, l); got != "RS256" {
			t.Errorf("signed %s, want RS256", got)
		}
	})
}
