package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/crypto/bcrypt"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/keys"
	"github.com/cibaproxy/cibaproxy/internal/store/memory"
	"github.com/cibaproxy/cibaproxy/internal/upstream/local"
)

const issuer = "https://ciba.example"

// noHints is a local.HintVerifier that knows no hint: the test mints
// tokens directly.
type noHints struct{}

func (noHints) IDTokenHint(context.Context, string, string) (string, error) {
	return "", errors.New("no hints here")
}
func (noHints) LoginHintToken(context.Context, string, string) (string, string, error) {
	return "", "", errors.New("no hints here")
}

// env is cibaproxy's local issuer (its real signer and minter) and the
// resource server in front of its jwks.
type env struct {
	issuer *local.Upstream
	rs     *httptest.Server
}

func newEnv(t *testing.T) *env {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	m, err := keys.New(k)
	if err != nil {
		t.Fatal(err)
	}
	pw, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	u, err := local.New(local.Config{
		Issuer: issuer, Users: []local.User{{Username: "alice", Subject: "sub-alice", PasswordHash: pw}},
		AccessTokenTTL: 10 * time.Minute, IDTokenTTL: 5 * time.Minute, RefreshTokenTTL: time.Hour,
		Signer: m, Hints: noHints{}, LeftHash: keys.LeftHash, Store: memory.New(),
	})
	if err != nil {
		t.Fatal(err)
	}
	jwks := m.PublicJWKS()
	v := &Verifier{
		Issuer: issuer, Audience: issuer,
		Keys:      func(context.Context, bool) (*jose.JSONWebKeySet, error) { return &jwks, nil },
		TokenAlgs: DefaultAlgs, ProofAlgs: DefaultAlgs, Window: time.Minute,
	}
	e := &env{issuer: u}
	var public string
	e.rs = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		Handler(v, public, slog.New(slog.NewTextHandler(io.Discard, nil))).ServeHTTP(w, r)
	}))
	public = e.rs.URL
	t.Cleanup(e.rs.Close)
	return e
}

// holder is a client's DPoP key.
type holder struct{ key *ecdsa.PrivateKey }

func newHolder(t *testing.T) *holder {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &holder{k}
}

func (h *holder) jkt(t *testing.T) string {
	t.Helper()
	tp, err := (&jose.JSONWebKey{Key: h.key.Public()}).Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(tp)
}

// proof is a DPoP proof of h's key for GET htu with access token at, with
// claims overridden by extra.
func (h *holder) proof(t *testing.T, htu, at string, extra map[string]any) string {
	t.Helper()
	sum := sha256.Sum256([]byte(at))
	c := map[string]any{"jti": rand.Text(), "htm": "GET", "htu": htu, "iat": time.Now().Unix(), "ath": base64.RawURLEncoding.EncodeToString(sum[:])}
	for k, v := range extra {
		c[k] = v
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: h.key}, (&jose.SignerOptions{EmbedJWK: true}).WithType("dpop+jwt"))
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(c)
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := jws.CompactSerialize()
	return raw
}

// mint is an access token of cibaproxy's local issuer for a CIBA request
// bound to jkt ("" for a bearer token).
func (e *env) mint(t *testing.T, jkt string) string {
	t.Helper()
	now := time.Now()
	tr, err := e.issuer.Mint(context.Background(), &ciba.AuthRequest{ID: "r", ClientID: "c1", Subject: "sub-alice", Scopes: []string{"openid"}, AuthTime: now, DPoPJKT: jkt}, now)
	if err != nil {
		t.Fatal(err)
	}
	return tr.AccessToken
}

// get calls /hello with the Authorization scheme and token and the proof.
func (e *env) get(t *testing.T, scheme, token, proof string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.rs.URL+"/hello", nil)
	req.Header.Set("Authorization", scheme+" "+token)
	if proof != "" {
		req.Header.Set("DPoP", proof)
	}
	resp, err := e.rs.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	if resp.StatusCode == http.StatusUnauthorized && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "DPoP ") {
		t.Errorf("401 without a DPoP challenge: %q", resp.Header.Get("WWW-Authenticate"))
	}
	return resp.StatusCode, body
}

func TestResourceServer(t *testing.T) {
	e := newEnv(t)
	alice := newHolder(t)
	at := e.mint(t, alice.jkt(t))
	url := e.rs.URL + "/hello"

	t.Run("a good token with a proof of its key is accepted", func(t *testing.T) {
		status, body := e.get(t, "DPoP", at, alice.proof(t, url, at, nil))
		if status != http.StatusOK || body["sub"] != "sub-alice" || body["client_id"] != "c1" || body["jkt"] != alice.jkt(t) {
			t.Fatalf("got %d %v", status, body)
		}
	})
	t.Run("a replayed proof is refused", func(t *testing.T) {
		p := alice.proof(t, url, at, nil)
		if status, body := e.get(t, "DPoP", at, p); status != http.StatusOK {
			t.Fatalf("first use: %d %v", status, body)
		}
		if status, body := e.get(t, "DPoP", at, p); status != http.StatusUnauthorized || body["error"] != "invalid_dpop_proof" {
			t.Fatalf("replay: %d %v, want 401 invalid_dpop_proof", status, body)
		}
	})
	t.Run("a stolen token used with another key is refused", func(t *testing.T) {
		thief := newHolder(t)
		status, body := e.get(t, "DPoP", at, thief.proof(t, url, at, nil))
		if status != http.StatusUnauthorized || body["error"] != "invalid_token" || !strings.Contains(body["error_description"].(string), "another key") {
			t.Fatalf("got %d %v, want 401 invalid_token", status, body)
		}
	})
	for _, tt := range []struct {
		name   string
		scheme string
		token  func() string
		proof  func() string
		code   string
	}{
		{"a DPoP-bound token sent as a bearer token (RFC 9449 §7.2)", "Bearer", func() string { return at },
			func() string { return alice.proof(t, url, at, nil) }, "invalid_token"},
		{"no proof", "DPoP", func() string { return at }, func() string { return "" }, "invalid_dpop_proof"},
		{"a proof for another URL", "DPoP", func() string { return at },
			func() string { return alice.proof(t, "https://elsewhere.example/hello", at, nil) }, "invalid_dpop_proof"},
		{"a proof for another method", "DPoP", func() string { return at },
			func() string { return alice.proof(t, url, at, map[string]any{"htm": "POST"}) }, "invalid_dpop_proof"},
		{"a stale proof", "DPoP", func() string { return at },
			func() string {
				return alice.proof(t, url, at, map[string]any{"iat": time.Now().Add(-time.Hour).Unix()})
			}, "invalid_dpop_proof"},
		{"a proof made for another access token (ath)", "DPoP", func() string { return at },
			func() string { return alice.proof(t, url, "another-token", nil) }, "invalid_dpop_proof"},
		{"a proof without ath", "DPoP", func() string { return at },
			func() string { return alice.proof(t, url, at, map[string]any{"ath": nil}) }, "invalid_dpop_proof"},
		{"a bearer token of the issuer, not DPoP-bound", "DPoP", func() string { return e.mint(t, "") },
			func() string { bearer := e.mint(t, ""); return alice.proof(t, url, bearer, nil) }, "invalid_token"},
		{"a token signed by another issuer key", "DPoP", func() string { return newEnv(t).mint(t, alice.jkt(t)) },
			func() string { return alice.proof(t, url, at, nil) }, "invalid_token"},
	} {
		t.Run(tt.name+" is refused", func(t *testing.T) {
			status, body := e.get(t, tt.scheme, tt.token(), tt.proof())
			if status != http.StatusUnauthorized || body["error"] != tt.code {
				t.Fatalf("got %d %v, want 401 %s", status, body, tt.code)
			}
		})
	}
}
