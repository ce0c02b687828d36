package httpapi

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/clientauth"
	"github.com/cibaproxy/cibaproxy/internal/clientmeta"
	"github.com/cibaproxy/cibaproxy/internal/seal"
	"github.com/cibaproxy/cibaproxy/internal/store/memory"
)

// boundService registers the clients of metas (validated by clientmeta)
// and returns a ciba service on st that mints with cbMinter, and the
// clients' registry: the setup of the tests of bound tokens (mTLS here,
// DPoP in dpop_test.go).
func boundService(t *testing.T, st ciba.Store, metas ...clientmeta.Metadata) (*ciba.Service, *clientauth.Registry) {
	t.Helper()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	ring, _ := seal.NewRing(seal.Key{ID: "k", Secret: key})
	var regs []*clientauth.Registration
	clients := map[string]*ciba.Client{}
	for _, m := range metas {
		v, problems := clientmeta.Check(m)
		if problems != nil {
			t.Fatal(problems)
		}
		reg, err := clientauth.NewRegistration(context.Background(), v)
		if err != nil {
			t.Fatal(err)
		}
		regs = append(regs, reg)
		clients[m.ID] = reg.Client()
	}
	registry, err := clientauth.NewRegistry(regs...)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := ciba.NewService(ciba.Config{DefaultExpiry: time.Minute, MaxExpiry: time.Minute, Interval: time.Second, BindingMessageMax: 20}, ciba.Deps{
		Store: st, Upstream: fakeUpstream{}, Minter: cbMinter{}, Sealer: ring, Notifier: nopNotifier{},
		Clients:     func(id string) (*ciba.Client, bool) { c, ok := clients[id]; return c, ok },
		CallbackKey: key,
	})
	if err != nil {
		t.Fatal(err)
	}
	return svc, registry
}

// cbMinter mints an access token naming the thumbprint it is bound to.
type cbMinter struct{}

func (cbMinter) Mint(_ context.Context, r *ciba.AuthRequest, _ time.Time) (*ciba.TokenResponse, error) {
	return &ciba.TokenResponse{AccessToken: "at|cnf=" + r.CertThumbprint, TokenType: "Bearer"}, nil
}

// cbRefresher records the certificate each refresh was asked to bind to.
type cbRefresher struct {
	mu    sync.Mutex
	certs []string
}

func (f *cbRefresher) RefreshBound(_ context.Context, _, _, _ string, b ciba.Binding, _ time.Time) (*ciba.TokenResponse, error) {
	cert := b.Cert
	f.mu.Lock()
	defer f.mu.Unlock()
	f.certs = append(f.certs, cert)
	return &ciba.TokenResponse{AccessToken: "rt-at|cnf=" + cert, TokenType: "Bearer"}, nil
}

// selfSigned returns a new client certificate for TLS.
func selfSigned(t *testing.T, cn string) tls.Certificate {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k, Leaf: leaf}
}

// certBoundServer serves the handler over TLS, requesting (not verifying)
// client certificates as cibaproxy's listener does. Client "bound" has
// certificate-bound access tokens, "plain" not; both authenticate with a
// client secret, so a certificate is only what their tokens are bound to.
func certBoundServer(t *testing.T) (ciba.Store, *ciba.Service, *cbRefresher, *httptest.Server) {
	t.Helper()
	st := memory.New()
	svc, registry := boundService(t, st,
		clientmeta.Metadata{ID: "bound", DeliveryMode: clientmeta.ModePoll, Secret: "secret", CertBoundAccessTokens: true},
		clientmeta.Metadata{ID: "plain", DeliveryMode: clientmeta.ModePoll, Secret: "secret"})
	auth := &clientauth.Authenticator{Registry: registry}
	ref := &cbRefresher{}
	s := &Server{
		Issuer: "https://ciba.test", Service: svc, Clients: auth, ClientCert: auth.CertThumbprint, Refresher: ref, Logger: discard(),
		Discovery: func(context.Context) (map[string]any, error) { return map[string]any{}, nil },
		JWKS:      func() any { return map[string]any{} },
	}
	srv := httptest.NewUnstartedServer(s.Handler())
	srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return st, svc, ref, srv
}

// cbPost POSTs form as client (Basic secret) over a connection presenting
// cert (none when nil).
func cbPost(t *testing.T, srv *httptest.Server, cert *tls.Certificate, path, client string, form url.Values) (int, map[string]any) {
	t.Helper()
	tr := srv.Client().Transport.(*http.Transport).Clone()
	if cert != nil {
		tr.TLSClientConfig.Certificates = []tls.Certificate{*cert}
	}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(client, "secret")
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var body map[string]any
	_ = json.Unmarshal(raw, &body)
	return resp.StatusCode, body
}

func TestCertBoundEndpoints(t *testing.T) {
	certA, certB := selfSigned(t, "a"), selfSigned(t, "b")
	tpA := clientauth.CertThumbprint(certA.Leaf)
	ctx := context.Background()
	count := func(st ciba.Store) int {
		n := 0
		_ = st.ListRequests(ctx, func(*ciba.AuthRequest) bool { n++; return true })
		return n
	}
	approve := func(t *testing.T, st ciba.Store, svc *ciba.Service, id string) {
		t.Helper()
		r, err := st.GetRequest(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if err := svc.ApproveWithMinter(ctx, r); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("a bound client without a certificate is invalid_request at bc-authorize and nothing is stored", func(t *testing.T) {
		st, _, _, srv := certBoundServer(t)
		status, body := cbPost(t, srv, nil, PathBCAuthz, "bound", aliceForm)
		if status != http.StatusBadRequest || body["error"] != "invalid_request" || !strings.Contains(body["error_description"].(string), "tls_client_certificate_bound_access_tokens") {
			t.Fatalf("got %d %v, want 400 invalid_request naming the setting", status, body)
		}
		if n := count(st); n != 0 {
			t.Fatalf("%d requests stored, want none", n)
		}
	})

	t.Run("bc-authorize records the certificate; /token hands the tokens out only with the same one", func(t *testing.T) {
		st, svc, _, srv := certBoundServer(t)
		status, body := cbPost(t, srv, &certA, PathBCAuthz, "bound", aliceForm)
		if status != http.StatusOK {
			t.Fatalf("bc-authorize: %d %v", status, body)
		}
		id := body["auth_req_id"].(string)
		r, err := st.GetRequest(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if r.CertThumbprint != tpA {
			t.Fatalf("stored thumbprint %q, want %q", r.CertThumbprint, tpA)
		}
		approve(t, st, svc, id)
		poll := url.Values{"grant_type": {GrantCIBA}, "auth_req_id": {id}}
		status, body = cbPost(t, srv, &certB, PathToken, "bound", poll)
		if status != http.StatusBadRequest || body["error"] != "invalid_grant" {
			t.Fatalf("another certificate: %d %v, want 400 invalid_grant", status, body)
		}
		status, body = cbPost(t, srv, nil, PathToken, "bound", poll)
		if status != http.StatusBadRequest || body["error"] != "invalid_request" {
			t.Fatalf("no certificate: %d %v, want 400 invalid_request", status, body)
		}
		status, body = cbPost(t, srv, &certA, PathToken, "bound", poll)
		if status != http.StatusOK || body["access_token"] != "at|cnf="+tpA || body["token_type"] != "Bearer" {
			t.Fatalf("the same certificate: %d %v, want the tokens bound to %s", status, body, tpA)
		}
	})

	t.Run("an unbound client presenting a certificate is not bound to it", func(t *testing.T) {
		st, svc, _, srv := certBoundServer(t)
		status, body := cbPost(t, srv, &certA, PathBCAuthz, "plain", aliceForm)
		if status != http.StatusOK {
			t.Fatalf("bc-authorize: %d %v", status, body)
		}
		id := body["auth_req_id"].(string)
		approve(t, st, svc, id)
		p := url.Values{"grant_type": {GrantCIBA}, "auth_req_id": {id}}
		status, body = cbPost(t, srv, &certB, PathToken, "plain", p)
		if status != http.StatusOK || body["access_token"] != "at|cnf=" {
			t.Fatalf("token: %d %v, want unbound tokens", status, body)
		}
	})

	t.Run("a bound client's refresh is bound to the certificate presented, and refused without one", func(t *testing.T) {
		_, _, ref, srv := certBoundServer(t)
		rf := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"rt"}}
		status, body := cbPost(t, srv, nil, PathToken, "bound", rf)
		if status != http.StatusBadRequest || body["error"] != "invalid_request" {
			t.Fatalf("no certificate: %d %v, want 400 invalid_request", status, body)
		}
		if len(ref.certs) != 0 {
			t.Fatalf("the refresh token was presented to the issuer (%d calls) though the request was refused", len(ref.certs))
		}
		tpB := clientauth.CertThumbprint(certB.Leaf)
		status, body = cbPost(t, srv, &certB, PathToken, "bound", rf)
		if status != http.StatusOK || len(ref.certs) != 1 || ref.certs[0] != tpB {
			t.Fatalf("with a certificate: %d %v, refresher got %v; want bound to %s", status, body, ref.certs, tpB)
		}
		if status, _ = cbPost(t, srv, &certB, PathToken, "plain", rf); status != http.StatusOK || ref.certs[1] != "" {
			t.Fatalf("an unbound client's refresh: %d, refresher got %v; want unbound", status, ref.certs)
		}
	})
}
