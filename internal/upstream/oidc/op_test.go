package oidc

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/cibaproxy/cibaproxy/internal/upstream/idp"
	"github.com/cibaproxy/cibaproxy/internal/upstream/idp/idptest"
)

// testOP is a minimal OpenID Provider for the error paths of this package:
// discovery, a JWKS with rotatable ES256 keys and a scripted token endpoint.
// It listens on 127.0.0.1 (httptest).
type testOP struct {
	t   *testing.T
	srv *httptest.Server

	mu             sync.Mutex
	discoveryDown  bool // discovery answers 503
	jwksDown       bool // the JWKS answers 503
	jwksHits       int
	issuerOverride string   // the issuer the discovery document claims
	authzTypes     []string // authorization_details_types_supported; nil: absent
	key            *ecdsa.PrivateKey
	kid            string
	published      []jose.JSONWebKey
	token          http.HandlerFunc // the token endpoint; nil: tokenOK with nextIDToken
	nextIDToken    string
	tokenRequests  []tokenRequest
}

// tokenRequest is what the token endpoint received.
type tokenRequest struct {
	Form   url.Values
	Header http.Header
}

func newTestOP(t *testing.T) *testOP {
	t.Helper()
	op := &testOP{t: t}
	op.rotate(false)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", op.discovery)
	mux.HandleFunc("GET /jwks", op.jwks)
	mux.HandleFunc("POST /token", op.tokenEndpoint)
	op.srv = httptest.NewServer(mux)
	t.Cleanup(op.srv.Close)
	return op
}

func (op *testOP) issuer() string { return op.srv.URL }

func (op *testOP) discovery(w http.ResponseWriter, _ *http.Request) {
	op.mu.Lock()
	down, iss, authzTypes := op.discoveryDown, op.issuerOverride, op.authzTypes
	op.mu.Unlock()
	if down {
		http.Error(w, "maintenance", http.StatusServiceUnavailable)
		return
	}
	if iss == "" {
		iss = op.issuer()
	}
	doc := map[string]any{
		"issuer":                                iss,
		"authorization_endpoint":                op.issuer() + "/authorize",
		"token_endpoint":                        op.issuer() + "/token",
		"jwks_uri":                              op.issuer() + "/jwks",
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"ES256"},
		"code_challenge_methods_supported":      []string{"S256"},
	}
	if authzTypes != nil {
		doc["authorization_details_types_supported"] = authzTypes
	}
	idptest.WriteJSON(w, http.StatusOK, doc)
}

func (op *testOP) jwks(w http.ResponseWriter, _ *http.Request) {
	op.mu.Lock()
	op.jwksHits++
	down, keys := op.jwksDown, append([]jose.JSONWebKey(nil), op.published...)
	op.mu.Unlock()
	if down {
		http.Error(w, "maintenance", http.StatusServiceUnavailable)
		return
	}
	idptest.WriteJSON(w, http.StatusOK, jose.JSONWebKeySet{Keys: keys})
}

func (op *testOP) tokenEndpoint(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	op.mu.Lock()
	op.tokenRequests = append(op.tokenRequests, tokenRequest{Form: r.PostForm, Header: r.Header.Clone()})
	h, idt := op.token, op.nextIDToken
	op.mu.Unlock()
	if h != nil {
		h(w, r)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	idptest.WriteJSON(w, http.StatusOK, map[string]any{
		"access_token":  "idp-access-token",
		"token_type":    "Bearer",
		"expires_in":    300,
		"refresh_token": "idp-refresh-token",
		"id_token":      idt,
		"scope":         "openid email",
	})
}

func (op *testOP) tokenRequestCount() int {
	op.mu.Lock()
	defer op.mu.Unlock()
	return len(op.tokenRequests)
}

func (op *testOP) lastTokenRequest() tokenRequest {
	op.mu.Lock()
	defer op.mu.Unlock()
	if len(op.tokenRequests) == 0 {
		op.t.Fatal("the token endpoint was not called")
	}
	return op.tokenRequests[len(op.tokenRequests)-1]
}

// rotate makes a new signing key with a new kid; keepOld keeps the old
// public key in the JWKS.
func (op *testOP) rotate(keepOld bool) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		op.t.Fatal(err)
	}
	op.mu.Lock()
	defer op.mu.Unlock()
	op.key = key
	op.kid = randomString()[:12]
	pub := jose.JSONWebKey{Key: &key.PublicKey, KeyID: op.kid, Algorithm: "ES256", Use: "sig"}
	if keepOld {
		op.published = append(op.published, pub)
	} else {
		op.published = []jose.JSONWebKey{pub}
	}
}

func (op *testOP) set(f func(op *testOP)) {
	op.mu.Lock()
	defer op.mu.Unlock()
	f(op)
}

// claims are the claims of a valid ID token for client idpClient; edit
// overrides them (a nil value deletes the claim).
func (op *testOP) claims(edit map[string]any) map[string]any {
	now := time.Now()
	c := map[string]any{
		"iss":       op.issuer(),
		"sub":       "user-42",
		"aud":       idpClient,
		"iat":       now.Unix(),
		"exp":       now.Add(5 * time.Minute).Unix(),
		"auth_time": now.Add(-time.Minute).Unix(),
		"nonce":     testNonce,
	}
	for k, v := range edit {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

// idToken signs an ID token with the current key.
func (op *testOP) idToken(edit map[string]any) string {
	op.mu.Lock()
	key, kid := op.key, op.kid
	op.mu.Unlock()
	return signWith(op.t, key, kid, op.claims(edit))
}

func signWith(t *testing.T, key *ecdsa.PrivateKey, kid string, claims map[string]any) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const (
	cibaClient = "ciba-client"
	idpClient  = "idp-client"
	idpSecret  = "idp-secret-do-not-leak"
	testNonce  = "nonce-0123456789abcdef"
)

func testConfig(op *testOP) Config {
	return Config{
		Issuer:      op.issuer(),
		RedirectURL: "https://ciba.example/approve/callback",
		Clients:     map[string]idp.Credentials{cibaClient: {ClientID: idpClient, ClientSecret: idpSecret}},
		MatchClaims: []string{"email", "preferred_username", "sub"},
	}
}

// newTestUpstream returns an upstream on op with a settable clock.
func newTestUpstream(t *testing.T, op *testOP, edit func(*Config)) (*Upstream, *idptest.Clock) {
	t.Helper()
	cfg := testConfig(op)
	if edit != nil {
		edit(&cfg)
	}
	clk := idptest.NewClock()
	u, err := newUpstream(context.Background(), cfg, clk.Now)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return u, clk
}
