package jose

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gojose "github.com/go-jose/go-jose/v4"
)

func TestNewStaticKeySet(t *testing.T) {
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		keys []gojose.JSONWebKey
		ok   bool
	}{
		{"public RSA and EC keys are accepted", []gojose.JSONWebKey{publicJWK(rsaKey1(), "a"), publicJWK(ecKey1(), "b")}, true},
		{"an encryption key is skipped", []gojose.JSONWebKey{publicJWK(rsaKey1(), "a"), {Key: rsaKey2().Public(), KeyID: "enc", Use: "enc"}}, true},
		{"an empty set is refused", nil, false},
		{"a set of encryption keys only is refused", []gojose.JSONWebKey{{Key: rsaKey2().Public(), KeyID: "enc", Use: "enc"}}, false},
		{"a symmetric key is refused", []gojose.JSONWebKey{{Key: []byte(testSecret), KeyID: "oct"}}, false},
		{"a private key is refused", []gojose.JSONWebKey{{Key: rsaKey1(), KeyID: "priv"}}, false},
		{"an RSA key under 2048 bits is refused", []gojose.JSONWebKey{{Key: small.Public(), KeyID: "small"}}, false},
		{"a key with an HMAC alg is refused", []gojose.JSONWebKey{{Key: rsaKey1().Public(), KeyID: "a", Algorithm: "HS256"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewStaticKeySet(gojose.JSONWebKeySet{Keys: tt.keys})
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestStaticKeySetSelection(t *testing.T) {
	ks, err := NewStaticKeySet(gojose.JSONWebKeySet{Keys: []gojose.JSONWebKey{
		{Key: rsaKey1().Public(), KeyID: "rs", Algorithm: "RS256"},
		publicJWK(rsaKey2(), "any"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	payload := []byte(`{"x":1}`)
	tests := []struct {
		name string
		s    signer
		err  error // nil: verifies
	}{
		{"kid selects the key", signer{alg: gojose.RS256, key: rsaKey1(), kid: "rs"}, nil},
		{"no kid: every fitting key is tried", signer{alg: gojose.RS256, key: rsaKey2()}, nil},
		{"a key's alg restricts it (RS256 key, PS256 JWS)", signer{alg: gojose.PS256, key: rsaKey1(), kid: "rs"}, ErrUnknownKey},
		{"unknown kid", signer{alg: gojose.RS256, key: rsaKey1(), kid: "nope"}, ErrUnknownKey},
		{"an EC JWS fits no RSA key", signer{alg: gojose.ES256, key: ecKey1()}, ErrUnknownKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ks.Verify(t.Context(), signPayload(t, tt.s, payload))
			if tt.err == nil {
				if err != nil || string(got) != string(payload) {
					t.Fatalf("Verify = %q, %v", got, err)
				}
				return
			}
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
		})
	}
	t.Run("a KeySet never verifies an HMAC", func(t *testing.T) {
		if _, err := ks.Verify(t.Context(), signPayload(t, signer{alg: gojose.HS256, key: []byte(testSecret)}, payload)); err == nil {
			t.Fatal("HS256 verified by a key set")
		}
	})
}

// jwksServer serves a JWKS on 127.0.0.1 and counts the fetches.
type jwksServer struct {
	*httptest.Server
	mu      sync.Mutex
	keys    []gojose.JSONWebKey
	status  int
	fetches atomic.Int32
}

func newJWKSServer(t *testing.T, keys ...gojose.JSONWebKey) *jwksServer {
	s := &jwksServer{keys: keys, status: http.StatusOK}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.status != http.StatusOK {
			http.Error(w, "down", s.status)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(gojose.JSONWebKeySet{Keys: s.keys})
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(status int, keys ...gojose.JSONWebKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status, s.keys = status, keys
}

func TestRemoteKeySet(t *testing.T) {
	srv := newJWKSServer(t, publicJWK(rsaKey1(), "k1"))
	ks := newRemoteKeySet(context.Background(), srv.URL, 0)
	payload := []byte(`{"x":1}`)
	k1 := signer{alg: gojose.RS256, key: rsaKey1(), kid: "k1"}
	k2 := signer{alg: gojose.RS256, key: rsaKey2(), kid: "k2"}

	t.Run("the keys are fetched on first use and cached", func(t *testing.T) {
		for range 3 {
			if _, err := ks.Verify(t.Context(), signPayload(t, k1, payload)); err != nil {
				t.Fatal(err)
			}
		}
		if n := srv.fetches.Load(); n != 1 {
			t.Fatalf("%d fetches, want 1", n)
		}
	})
	t.Run("an unknown kid fetches the keys again (key rotation)", func(t *testing.T) {
		srv.set(http.StatusOK, publicJWK(rsaKey1(), "k1"), publicJWK(rsaKey2(), "k2"))
		// go-oidc publishes a fetch's result a moment before it lets the
		// next fetch start: a verification right after a fetch may still
		// see that fetch's keys. Retry briefly.
		var err error
		for range 50 {
			if _, err = ks.Verify(t.Context(), signPayload(t, k2, payload)); err == nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err != nil {
			t.Fatal(err)
		}
		if n := srv.fetches.Load(); n < 2 {
			t.Fatalf("%d fetches, want a second one", n)
		}
	})
	t.Run("keys that cannot be fetched are reported as unavailable", func(t *testing.T) {
		srv.set(http.StatusInternalServerError)
		var err error
		for range 50 { // see above
			if _, err = ks.Verify(t.Context(), signPayload(t, signer{alg: gojose.RS256, key: rsaKey1(), kid: "k3"}, payload)); errors.Is(err, ErrKeysUnavailable) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if !errors.Is(err, ErrKeysUnavailable) {
			t.Fatalf("err = %v, want ErrKeysUnavailable", err)
		}
		p := requestPolicy(t)
		p.KeySet = ks
		_, err = VerifyRequestObject(t.Context(), sign(t, signer{alg: gojose.RS256, key: rsaKey1(), kid: "k3"}, requestClaims()), p)
		wantError(t, err, ErrInvalid, `the keys of client "client-1" could not be fetched`)
	})
	t.Run("a request object verified with a jwks_uri", func(t *testing.T) {
		srv.set(http.StatusOK, publicJWK(rsaKey1(), "k1"))
		p := requestPolicy(t)
		p.KeySet = ks
		if _, err := VerifyRequestObject(t.Context(), sign(t, k1, requestClaims()), p); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a wrong signature is not reported as unavailable", func(t *testing.T) {
		_, err := ks.Verify(t.Context(), signPayload(t, signer{alg: gojose.RS256, key: rsaKey2(), kid: "k1"}, payload))
		if err == nil || errors.Is(err, ErrKeysUnavailable) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestRemoteKeySetThrottle(t *testing.T) {
	srv := newJWKSServer(t, publicJWK(rsaKey1(), "k1"))
	ks := NewRemoteKeySet(context.Background(), srv.URL)
	payload := []byte(`{"x":1}`)
	if _, err := ks.Verify(t.Context(), signPayload(t, signer{alg: gojose.RS256, key: rsaKey1(), kid: "k1"}, payload)); err != nil {
		t.Fatal(err)
	}
	t.Run("forged tokens do not make cibaproxy fetch a jwks_uri again and again", func(t *testing.T) {
		for i := range 20 {
			_, err := ks.Verify(t.Context(), signPayload(t, signer{alg: gojose.RS256, key: rsaKey2(), kid: fmt.Sprint("forged-", i)}, payload))
			if err == nil || errors.Is(err, ErrKeysUnavailable) {
				t.Fatalf("err = %v, want a signature failure", err)
			}
		}
		if n := srv.fetches.Load(); n > 2 {
			t.Fatalf("%d fetches for 20 forged tokens within the minimum interval", n)
		}
	})
	t.Run("a JWK Set over 1 MiB is refused", func(t *testing.T) {
		big := newJWKSServer(t)
		big.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"keys":[],"pad":"` + strings.Repeat("x", 2<<20) + `"}`))
		})
		_, err := NewRemoteKeySet(context.Background(), big.URL).Verify(t.Context(), signPayload(t, signer{alg: gojose.RS256, key: rsaKey1(), kid: "k1"}, payload))
		if !errors.Is(err, ErrKeysUnavailable) {
			t.Fatalf("err = %v, want ErrKeysUnavailable", err)
		}
	})
}
