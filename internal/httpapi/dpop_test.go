package httpapi

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
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
	"github.com/cibaproxy/cibaproxy/internal/dpop"
	"github.com/cibaproxy/cibaproxy/internal/store/memory"
)

const dpopIssuer = "https://ciba.test"

// bindingRefresher records the binding each refresh was asked for.
type bindingRefresher struct {
	mu       sync.Mutex
	bindings []ciba.Binding
}

func (f *bindingRefresher) RefreshBound(_ context.Context, _, _, _ string, b ciba.Binding, _ time.Time) (*ciba.TokenResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.bindings = append(f.bindings, b)
	typ := "Bearer"
	if b.JKT != "" {
		typ = "DPoP"
	}
	return &ciba.TokenResponse{AccessToken: "at|jkt=" + b.JKT, TokenType: typ}, nil
}

func (f *bindingRefresher) calls() []ciba.Binding {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]ciba.Binding(nil), f.bindings...)
}

// dpopEnv is a server with clients "bound" (dpop_bound_access_tokens) and
// "plain", both with a client secret, on a memory store.
type dpopEnv struct {
	st  ciba.Store
	svc *ciba.Service
	ref *bindingRefresher
	srv *httptest.Server
	key *ecdsa.PrivateKey
}

func newDPoPEnv(t *testing.T, verifier func(ciba.Store) *dpop.Verifier) *dpopEnv {
	t.Helper()
	return newDPoPEnvOn(t, memory.New(), verifier)
}

// newDPoPEnvOn is newDPoPEnv on store st.
func newDPoPEnvOn(t *testing.T, st ciba.Store, verifier func(ciba.Store) *dpop.Verifier) *dpopEnv {
	t.Helper()
	svc, registry := boundService(t, st,
		clientmeta.Metadata{ID: "bound", DeliveryMode: clientmeta.ModePoll, Secret: "secret", DPoPBoundAccessTokens: true},
		clientmeta.Metadata{ID: "plain", DeliveryMode: clientmeta.ModePoll, Secret: "secret"},
		clientmeta.Metadata{ID: "pingbound", DeliveryMode: clientmeta.ModePing, Secret: "secret", DPoPBoundAccessTokens: true,
			NotificationEndpoint: "https://ping.example/cb"})
	ref := &bindingRefresher{}
	s := &Server{
		Issuer: dpopIssuer, Service: svc, Clients: &clientauth.Authenticator{Registry: registry}, Refresher: ref, Logger: discard(),
		Discovery: func(context.Context) (map[string]any, error) { return map[string]any{}, nil },
		JWKS:      func() any { return map[string]any{} },
	}
	if verifier != nil {
		s.DPoP = verifier(st)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &dpopEnv{st: st, svc: svc, ref: ref, srv: srv, key: k}
}

// proof returns a DPoP proof of e's key for POST htu, with extra claims.
func (e *dpopEnv) proof(t *testing.T, htu string, extra map[string]any) string {
	t.Helper()
	return dpopProof(t, e.key, "POST", htu, extra)
}

// post POSTs form to path as client with the given DPoP headers; it
// returns the status, the DPoP-Nonce header and the JSON body.
func (e *dpopEnv) post(t *testing.T, path, client string, form url.Values, proofs ...string) (int, string, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(client, "secret")
	for _, p := range proofs {
		req.Header.Add(headerDPoP, p)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var body map[string]any
	_ = json.Unmarshal(raw, &body)
	return resp.StatusCode, resp.Header.Get(headerDPoPNonce), body
}

var refreshForm = url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"rt"}}

// The token endpoint's DPoP rules (RFC 9449 §5): one row per rule.
func TestTokenDPoP(t *testing.T) {
	tokenURL := dpopIssuer + PathToken
	refused := func(t *testing.T, e *dpopEnv, status int, body map[string]any, code, desc string) {
		t.Helper()
		if status != http.StatusBadRequest || body["error"] != code || !strings.Contains(body["error_description"].(string), desc) {
			t.Fatalf("got %d %v, want 400 %s mentioning %q", status, body, code, desc)
		}
		if n := len(e.ref.calls()); n != 0 {
			t.Fatalf("the refresh token reached the issuer (%d calls) though the request was refused", n)
		}
	}

	t.Run("a refresh with a valid proof is bound to its key", func(t *testing.T) {
		e := newDPoPEnv(t, storeVerifier)
		status, nonce, body := e.post(t, PathToken, "plain", refreshForm, e.proof(t, tokenURL, nil))
		calls := e.ref.calls()
		if status != http.StatusOK || len(calls) != 1 || calls[0].JKT == "" || calls[0].PublicClient || body["token_type"] != "DPoP" {
			t.Fatalf("got %d %v, refresher got %+v", status, body, calls)
		}
		if nonce != "" {
			t.Fatalf("DPoP-Nonce %q without nonces configured", nonce)
		}
	})
	t.Run("more than one DPoP header is invalid_dpop_proof", func(t *testing.T) {
		e := newDPoPEnv(t, storeVerifier)
		status, _, body := e.post(t, PathToken, "plain", refreshForm, e.proof(t, tokenURL, nil), e.proof(t, tokenURL, nil))
		refused(t, e, status, body, "invalid_dpop_proof", "exactly one DPoP header")
	})
	t.Run("a dpop_bound_access_tokens client without a proof is invalid_dpop_proof", func(t *testing.T) {
		e := newDPoPEnv(t, storeVerifier)
		status, _, body := e.post(t, PathToken, "bound", refreshForm)
		refused(t, e, status, body, "invalid_dpop_proof", "dpop_bound_access_tokens")
	})
	t.Run("a proof for another URL is invalid_dpop_proof", func(t *testing.T) {
		e := newDPoPEnv(t, storeVerifier)
		status, _, body := e.post(t, PathToken, "bound", refreshForm, e.proof(t, dpopIssuer+PathBCAuthz, nil))
		refused(t, e, status, body, "invalid_dpop_proof", "htu")
	})
	t.Run("a replayed proof is invalid_dpop_proof", func(t *testing.T) {
		e := newDPoPEnv(t, storeVerifier)
		p := e.proof(t, tokenURL, nil)
		if status, _, body := e.post(t, PathToken, "bound", refreshForm, p); status != http.StatusOK {
			t.Fatalf("first use: %d %v", status, body)
		}
		status, _, body := e.post(t, PathToken, "bound", refreshForm, p)
		if status != http.StatusBadRequest || body["error"] != "invalid_dpop_proof" || len(e.ref.calls()) != 1 {
			t.Fatalf("replay: %d %v, refresher calls %d", status, body, len(e.ref.calls()))
		}
	})
	t.Run("with server nonces a proof without one is use_dpop_nonce, and the retry with it passes", func(t *testing.T) {
		e := newDPoPEnv(t, nonceVerifier(t, []byte(strings.Repeat("n", 32))))
		status, nonce, body := e.post(t, PathToken, "bound", refreshForm, e.proof(t, tokenURL, nil))
		if status != http.StatusBadRequest || body["error"] != "use_dpop_nonce" || nonce == "" {
			t.Fatalf("without a nonce: %d %q %v, want 400 use_dpop_nonce with DPoP-Nonce", status, nonce, body)
		}
		status, next, body := e.post(t, PathToken, "bound", refreshForm, e.proof(t, tokenURL, map[string]any{"nonce": nonce}))
		if status != http.StatusOK || next == "" || len(e.ref.calls()) != 1 {
			t.Fatalf("with the nonce: %d %q %v", status, next, body)
		}
	})
	t.Run("a CIBA poll with a proof is refused, not answered with unbound tokens, and stays redeemable", func(t *testing.T) {
		e := newDPoPEnv(t, storeVerifier)
		poll := url.Values{"grant_type": {GrantCIBA}, "auth_req_id": {e.approved(t, "plain", aliceForm).ID}}
		status, _, body := e.post(t, PathToken, "plain", poll, e.proof(t, tokenURL, nil))
		if status != http.StatusBadRequest || body["error"] != "invalid_dpop_proof" {
			t.Fatalf("poll with a proof: %d %v, want 400 invalid_dpop_proof", status, body)
		}
		if status, _, body = e.post(t, PathToken, "plain", poll); status != http.StatusOK {
			t.Fatalf("poll without a proof: %d %v, want the tokens", status, body)
		}
	})
	t.Run("without a verifier (tokens cibaproxy cannot bind) a proof is invalid_dpop_proof, not answered with bearer tokens", func(t *testing.T) {
		e := newDPoPEnv(t, nil)
		status, _, body := e.post(t, PathToken, "plain", refreshForm, e.proof(t, tokenURL, nil))
		refused(t, e, status, body, "invalid_dpop_proof", "cannot bind")
		status, _, body = e.post(t, PathBCAuthz, "plain", aliceForm, e.proof(t, dpopIssuer+PathBCAuthz, nil))
		if status != http.StatusBadRequest || body["error"] != "invalid_dpop_proof" {
			t.Fatalf("bc-authorize with a proof: %d %v, want invalid_dpop_proof", status, body)
		}
		if status, _, body := e.post(t, PathToken, "plain", refreshForm); status != http.StatusOK || body["token_type"] != "Bearer" {
			t.Fatalf("without a proof: %d %v, want bearer tokens", status, body)
		}
	})
}

// dpopError maps the verifier's errors to the wire codes.
func TestDPoPError(t *testing.T) {
	for _, tt := range []struct {
		err  error
		code ciba.ErrorCode
	}{
		{&dpop.Error{Kind: dpop.ErrInvalidProof, Reason: "x"}, ciba.CodeInvalidDPoPProof},
		{&dpop.Error{Kind: dpop.ErrReplay, Reason: "x"}, ciba.CodeInvalidDPoPProof},
		{&dpop.Error{Kind: dpop.ErrUseNonce, Reason: "x"}, ciba.CodeUseDPoPNonce},
		{&dpop.Error{Kind: dpop.ErrReplayCheck, Reason: "x", Err: ciba.ErrUnavailable}, ciba.CodeTemporarilyUnavailable},
		{&dpop.Error{Kind: dpop.ErrReplayCheck, Reason: "x", Err: errors.New("bug")}, ciba.CodeServerError},
		{errors.New("other"), ciba.CodeServerError},
	} {
		if got := ciba.AsError(dpopError(tt.err)).Code; got != tt.code {
			t.Errorf("dpopError(%v) = %s, want %s", tt.err, got, tt.code)
		}
	}
}

// approved sends a backchannel authentication request of client with
// form and DPoP proofs, and approves it as the user would, with tokens
// minted: the stored request is returned.
func (e *dpopEnv) approved(t *testing.T, client string, form url.Values, proofs ...string) *ciba.AuthRequest {
	t.Helper()
	status, _, body := e.post(t, PathBCAuthz, client, form, proofs...)
	if status != http.StatusOK {
		t.Fatalf("bc-authorize: %d %v", status, body)
	}
	r, err := e.st.GetRequest(t.Context(), body["auth_req_id"].(string))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.svc.ApproveWithMinter(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	return r
}

// jktOf is the thumbprint of e's key, as cnf.jkt carries it.
func (e *dpopEnv) jktOf(t *testing.T) string { return keyJKT(t, e.key) }

// The CIBA grant with DPoP (RFC 9449 §10): the key is fixed at
// bc-authorize, by a proof or by dpop_jkt, and the tokens are handed out
// only to a poll with a proof of that key.
func TestCIBADPoP(t *testing.T) {
	ctx := context.Background()
	bcURL, tokenURL := dpopIssuer+PathBCAuthz, dpopIssuer+PathToken
	with := func(extra url.Values) url.Values {
		f := url.Values{}
		for k, v := range aliceForm {
			f[k] = v
		}
		for k, v := range extra {
			f[k] = v
		}
		return f
	}
	count := func(st ciba.Store) int {
		n := 0
		_ = st.ListRequests(ctx, func(*ciba.AuthRequest) bool { n++; return true })
		return n
	}

	t.Run("a proof at bc-authorize binds the request; only a proof of that key redeems it", func(t *testing.T) {
		e := newDPoPEnv(t, storeVerifier)
		r := e.approved(t, "bound", aliceForm, e.proof(t, bcURL, nil))
		if r.DPoPJKT != e.jktOf(t) {
			t.Fatalf("stored dpop_jkt %q, want %q", r.DPoPJKT, e.jktOf(t))
		}
		poll := url.Values{"grant_type": {GrantCIBA}, "auth_req_id": {r.ID}}
		other := newDPoPEnv(t, nil) // another key
		other.srv = e.srv
		if status, _, body := e.post(t, PathToken, "plain", poll, e.proof(t, tokenURL, nil)); status != http.StatusBadRequest || body["error"] != "invalid_grant" {
			t.Fatalf("another client: %d %v, want invalid_grant", status, body)
		}
		if status, _, body := other.post(t, PathToken, "bound", poll, other.proof(t, tokenURL, nil)); status != http.StatusBadRequest || body["error"] != "invalid_grant" {
			t.Fatalf("another key: %d %v, want 400 invalid_grant", status, body)
		}
		if status, _, body := e.post(t, PathToken, "bound", poll); status != http.StatusBadRequest || body["error"] != "invalid_dpop_proof" {
			t.Fatalf("no proof from a bound client: %d %v, want 400 invalid_dpop_proof", status, body)
		}
		if status, _, body := e.post(t, PathToken, "bound", poll, e.proof(t, tokenURL, nil)); status != http.StatusOK {
			t.Fatalf("the same key: %d %v, want the tokens", status, body)
		}
	})
	t.Run("dpop_jkt at bc-authorize binds the request without a proof there", func(t *testing.T) {
		e := newDPoPEnv(t, storeVerifier)
		r := e.approved(t, "bound", with(url.Values{"dpop_jkt": {e.jktOf(t)}}))
		if r.DPoPJKT != e.jktOf(t) {
			t.Fatalf("stored dpop_jkt %q", r.DPoPJKT)
		}
		poll := url.Values{"grant_type": {GrantCIBA}, "auth_req_id": {r.ID}}
		if status, _, body := e.post(t, PathToken, "plain", poll); status != http.StatusBadRequest {
			t.Fatalf("poll by another client: %d %v", status, body)
		}
		if status, _, body := e.post(t, PathToken, "bound", poll, e.proof(t, tokenURL, nil)); status != http.StatusOK {
			t.Fatalf("poll with the key: %d %v", status, body)
		}
	})
	t.Run("an unbound client that bound its request must poll with the proof", func(t *testing.T) {
		e := newDPoPEnv(t, storeVerifier)
		r := e.approved(t, "plain", aliceForm, e.proof(t, bcURL, nil))
		poll := url.Values{"grant_type": {GrantCIBA}, "auth_req_id": {r.ID}}
		if status, _, body := e.post(t, PathToken, "plain", poll); status != http.StatusBadRequest || body["error"] != "invalid_grant" {
			t.Fatalf("no proof: %d %v, want 400 invalid_grant", status, body)
		}
		if status, _, body := e.post(t, PathToken, "plain", poll, e.proof(t, tokenURL, nil)); status != http.StatusOK {
			t.Fatalf("with the proof: %d %v", status, body)
		}
	})
	for _, tt := range []struct {
		name   string
		client string
		form   func(e *dpopEnv) url.Values
		proof  func(t *testing.T, e *dpopEnv) []string
		code   string
	}{
		{"a bound client without a proof or dpop_jkt is invalid_dpop_proof", "bound",
			func(*dpopEnv) url.Values { return aliceForm }, func(*testing.T, *dpopEnv) []string { return nil }, "invalid_dpop_proof"},
		{"a proof for the token endpoint is not one for bc-authorize", "bound",
			func(*dpopEnv) url.Values { return aliceForm }, func(t *testing.T, e *dpopEnv) []string { return []string{e.proof(t, tokenURL, nil)} }, "invalid_dpop_proof"},
		{"dpop_jkt naming another key than the proof's is invalid_dpop_proof", "plain",
			func(*dpopEnv) url.Values {
				return with(url.Values{"dpop_jkt": {"NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"}})
			},
			func(t *testing.T, e *dpopEnv) []string { return []string{e.proof(t, bcURL, nil)} }, "invalid_dpop_proof"},
		{"a dpop_jkt that is not a thumbprint is invalid_request", "plain",
			func(*dpopEnv) url.Values { return with(url.Values{"dpop_jkt": {"short"}}) }, func(*testing.T, *dpopEnv) []string { return nil }, "invalid_request"},
	} {
		t.Run(tt.name+", and nothing is stored", func(t *testing.T) {
			e := newDPoPEnv(t, storeVerifier)
			status, _, body := e.post(t, PathBCAuthz, tt.client, tt.form(e), tt.proof(t, e)...)
			if status != http.StatusBadRequest || body["error"] != tt.code {
				t.Fatalf("got %d %v, want 400 %s", status, body, tt.code)
			}
			if n := count(e.st); n != 0 {
				t.Fatalf("%d requests stored", n)
			}
		})
	}
}

// TestCIBADPoPPing: in ping mode (CIBA §10.2) the token request that follows
// the ping is held to the same DPoP binding as a poll: the request is bound
// at bc-authorize, and only a proof of that key redeems it; another key is
// invalid_grant and no proof invalid_dpop_proof, each leaving the tokens
// for the key holder, who gets them once.
func TestCIBADPoPPing(t *testing.T) {
	e := newDPoPEnv(t, storeVerifier)
	bcURL, tokenURL := dpopIssuer+PathBCAuthz, dpopIssuer+PathToken
	form := url.Values{"client_notification_token": {"8d67dc78-7faa-4d41-aabd-67707b374255"}}
	for k, v := range aliceForm {
		form[k] = v
	}
	r := e.approved(t, "pingbound", form, e.proof(t, bcURL, nil))
	if r.Mode != ciba.ModePing || r.DPoPJKT != e.jktOf(t) {
		t.Fatalf("stored mode %q dpop_jkt %q, want ping and %q", r.Mode, r.DPoPJKT, e.jktOf(t))
	}
	grant := url.Values{"grant_type": {GrantCIBA}, "auth_req_id": {r.ID}}
	other := newDPoPEnv(t, nil) // another key, same server
	other.srv = e.srv
	if status, _, body := other.post(t, PathToken, "pingbound", grant, other.proof(t, tokenURL, nil)); status != http.StatusBadRequest || body["error"] != "invalid_grant" {
		t.Fatalf("another key: %d %v, want 400 invalid_grant", status, body)
	}
	if status, _, body := e.post(t, PathToken, "pingbound", grant); status != http.StatusBadRequest || body["error"] != "invalid_dpop_proof" {
		t.Fatalf("no proof: %d %v, want 400 invalid_dpop_proof", status, body)
	}
	if status, _, body := e.post(t, PathToken, "pingbound", grant, e.proof(t, tokenURL, nil)); status != http.StatusOK || body["access_token"] == nil {
		t.Fatalf("the same key: %d %v, want the tokens", status, body)
	}
	if status, _, body := e.post(t, PathToken, "pingbound", grant, e.proof(t, tokenURL, nil)); status != http.StatusBadRequest || body["error"] != "invalid_grant" {
		t.Fatalf("a second redemption: %d %v, want 400 invalid_grant", status, body)
	}
}
