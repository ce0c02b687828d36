package clientauth

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gojose "github.com/go-jose/go-jose/v4"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// certJWKS serves a client's JWK Set on 127.0.0.1, as its jwks_uri, and
// counts the fetches.
type certJWKS struct {
	*httptest.Server
	mu      sync.Mutex
	keys    []gojose.JSONWebKey
	status  int
	fetches atomic.Int32
}

func newCertJWKS(t *testing.T, certs ...testCert) *certJWKS {
	s := &certJWKS{status: http.StatusOK}
	s.set(http.StatusOK, certs...)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.fetches.Add(1)
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.status != http.StatusOK {
			http.Error(w, "down", s.status)
			return
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_ = json.NewEncoder(w).Encode(gojose.JSONWebKeySet{Keys: s.keys})
	}))
	t.Cleanup(s.Close)
	return s
}

// set publishes the certificates (in x5c) of certs, or answers status.
func (s *certJWKS) set(status int, certs ...testCert) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status, s.keys = status, nil
	for _, c := range certs {
		s.keys = append(s.keys, gojose.JSONWebKey{Key: &c.key.PublicKey, KeyID: c.cert.Subject.CommonName, Use: "sig", Certificates: []*x509.Certificate{c.cert}})
	}
}

// selfSignedURIRegistry is a registry with one self_signed_tls_client_auth
// client "selfuri" whose certificates are at jwks.
func selfSignedURIRegistry(t *testing.T, jwks *certJWKS) *Registry {
	t.Helper()
	reg, err := register(t.Context(), testOpts{
		Client:  ciba.Client{ID: "selfuri", Mode: ciba.ModePoll},
		Methods: []string{MethodSelfSignedTLSClientAuth},
		JWKSURI: jwks.URL,
	})
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewRegistry(reg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// wantRefused checks an invalid_client answer whose description has msg.
func wantRefused(t *testing.T, err error, msg string) {
	t.Helper()
	var ae *AuthError
	if !errors.As(err, &ae) {
		t.Fatalf("err = %v, want an invalid_client AuthError", err)
	}
	if ae.Err.Code != ciba.CodeInvalidClient || ae.Err.Status != http.StatusUnauthorized {
		t.Errorf("got %s %d, want invalid_client 401", ae.Err.Code, ae.Err.Status)
	}
	if !strings.Contains(ae.Err.Description, msg) {
		t.Errorf("description %q does not contain %q", ae.Err.Description, msg)
	}
}

// RFC 8705 §2.2: for self_signed_tls_client_auth the certificate is
// matched against the keys the client registered, in jwks or at jwks_uri.
func TestSelfSignedTLSClientAuthJWKSURI(t *testing.T) {
	t.Parallel()
	a, b, mallory := newCert(t, "a", nil, false), newCert(t, "b", nil, false), newCert(t, "a", nil, false)
	jwks := newCertJWKS(t, a)
	r := selfSignedURIRegistry(t, jwks)
	form := url.Values{"client_id": {"selfuri"}}
	auth := func(t *testing.T, c testCert) (*Registration, error) {
		return r.Authenticate(t.Context(), tlsRequest(c.cert), form, tokenEndpoint)
	}

	// One after the other: the subtests share the jwks_uri's cache and
	// its fetch limit.
	t.Run("a certificate published at the jwks_uri authenticates", func(t *testing.T) {
		reg, err := auth(t, a)
		if err != nil {
			t.Fatalf("Authenticate: %v", err)
		}
		if reg.ID() != "selfuri" {
			t.Fatalf("authenticated %q", reg.ID())
		}
	})
	t.Run("the keys are cached", func(t *testing.T) {
		for range 3 {
			if _, err := auth(t, a); err != nil {
				t.Fatal(err)
			}
		}
		if n := jwks.fetches.Load(); n != 1 {
			t.Errorf("%d fetches, want 1", n)
		}
	})
	t.Run("a certificate not published is refused, and unknown certificates do not make cibaproxy fetch again and again", func(t *testing.T) {
		for range 10 {
			_, err := auth(t, mallory) // same subject, another key
			wantRefused(t, err, "is not one published at the client's jwks_uri")
		}
		if n := jwks.fetches.Load(); n > 2 {
			t.Errorf("%d fetches for 10 unknown certificates within the minimum interval", n)
		}
	})
	t.Run("a rotated certificate: the keys are fetched again on a miss", func(t *testing.T) {
		jwks.set(http.StatusOK, b)
		// The fetch limit (one per 5 s) may refuse the first tries;
		// bounded, no timing asserted.
		var err error
		for range 60 {
			if _, err = auth(t, b); err == nil {
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("the rotated certificate was never accepted: %v", err)
		}
		if n := jwks.fetches.Load(); n > 3 {
			t.Errorf("%d fetches, want at most 3 (first, maybe one miss, the rotation)", n)
		}
		_, err = auth(t, a)
		wantRefused(t, err, "is not one published at the client's jwks_uri")
	})
	t.Run("a jwks_uri that cannot be fetched refuses the client", func(t *testing.T) {
		down := newCertJWKS(t, a)
		down.set(http.StatusServiceUnavailable)
		_, err := selfSignedURIRegistry(t, down).Authenticate(t.Context(), tlsRequest(a.cert), form, tokenEndpoint)
		wantRefused(t, err, "the keys at the client's jwks_uri could not be fetched")
	})
}
