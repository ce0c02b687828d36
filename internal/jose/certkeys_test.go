package jose

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"

	gojose "github.com/go-jose/go-jose/v4"
)

// kidsOf returns the kids of keys.
func kidsOf(keys []gojose.JSONWebKey) []string {
	var out []string
	for _, k := range keys {
		out = append(out, k.KeyID)
	}
	return out
}

// RemoteKeySet.Keys serves self_signed_tls_client_auth with a jwks_uri
// (RFC 8705 §2.2): the keys are cached, fetched again on request, and the
// fetches keep Verify's rate limit.
func TestRemoteKeySetKeys(t *testing.T) {
	t.Run("fetched once, then cached; refresh fetches the rotated keys", func(t *testing.T) {
		srv := newJWKSServer(t, publicJWK(rsaKey1(), "k1"))
		ks := newRemoteKeySet(context.Background(), srv.URL, 0)
		for range 3 {
			keys, err := ks.Keys(t.Context(), false)
			if err != nil {
				t.Fatal(err)
			}
			if got := kidsOf(keys); len(got) != 1 || got[0] != "k1" {
				t.Fatalf("keys %v, want [k1]", got)
			}
		}
		if n := srv.fetches.Load(); n != 1 {
			t.Fatalf("%d fetches, want 1", n)
		}
		srv.set(http.StatusOK, publicJWK(rsaKey2(), "k2"))
		keys, err := ks.Keys(t.Context(), true)
		if err != nil {
			t.Fatal(err)
		}
		if got := kidsOf(keys); len(got) != 1 || got[0] != "k2" {
			t.Fatalf("keys after refresh %v, want [k2]", got)
		}
	})
	t.Run("a failed fetch is unavailable and keeps nothing new", func(t *testing.T) {
		srv := newJWKSServer(t)
		srv.set(http.StatusInternalServerError)
		_, err := newRemoteKeySet(context.Background(), srv.URL, 0).Keys(t.Context(), false)
		if !errors.Is(err, ErrKeysUnavailable) {
			t.Fatalf("err = %v, want ErrKeysUnavailable", err)
		}
	})
	t.Run("refreshes within the minimum interval return the cached keys without fetching", func(t *testing.T) {
		srv := newJWKSServer(t, publicJWK(rsaKey1(), "k1"))
		ks := NewRemoteKeySet(context.Background(), srv.URL)
		if _, err := ks.Keys(t.Context(), false); err != nil {
			t.Fatal(err)
		}
		for range 20 {
			keys, err := ks.Keys(t.Context(), true)
			if err != nil || len(keys) != 1 {
				t.Fatalf("keys %v, err %v", kidsOf(keys), err)
			}
		}
		if n := srv.fetches.Load(); n != 1 {
			t.Fatalf("%d fetches for 20 refreshes within the minimum interval, want 1", n)
		}
	})
	t.Run("encryption, private and symmetric keys are left out", func(t *testing.T) {
		enc := publicJWK(rsaKey2(), "enc")
		enc.Use = "enc"
		srv := newJWKSServer(t, publicJWK(ecKey1(), "sig"), enc)
		keys, err := newRemoteKeySet(context.Background(), srv.URL, 0).Keys(t.Context(), false)
		if err != nil {
			t.Fatal(err)
		}
		if got := kidsOf(keys); len(got) != 1 || got[0] != "sig" {
			t.Fatalf("keys %v, want [sig]", got)
		}
		for _, body := range []string{
			`{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"s"}]}`,
			`{"keys":[]}`,
			`not json`,
		} {
			if keys, err := parseRemoteJWKS([]byte(body)); err == nil {
				t.Errorf("%s: accepted, keys %v", body, kidsOf(keys))
			}
		}
	})
}

// FuzzParseRemoteJWKS: a fetched JWK Set never panics the parser, and
// what it accepts is public signature keys only.
func FuzzParseRemoteJWKS(f *testing.F) {
	for _, set := range []gojose.JSONWebKeySet{
		{Keys: []gojose.JSONWebKey{publicJWK(rsaKey1(), "k1"), publicJWK(ecKey1(), "ec1")}},
		{Keys: []gojose.JSONWebKey{{Key: rsaKey1(), KeyID: "private"}}},
	} {
		b, err := json.Marshal(set)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"","y":""}]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		keys, err := parseRemoteJWKS(body)
		if err != nil {
			return
		}
		if len(keys) == 0 {
			t.Fatal("accepted a set without keys")
		}
		for _, k := range keys {
			if !k.IsPublic() || !k.Valid() || k.Use == "enc" {
				t.Fatalf("accepted key %q: public %v valid %v use %q", k.KeyID, k.IsPublic(), k.Valid(), k.Use)
			}
		}
	})
}
