package httpapi

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/seal"
	"github.com/cibaproxy/cibaproxy/internal/store/memory"
)

// dpopMinter mints an access token that says what it was bound to.
type dpopMinter struct{}

func (dpopMinter) Mint(_ context.Context, r *ciba.AuthRequest, _ time.Time) (*ciba.TokenResponse, error) {
	typ := "Bearer"
	if r.DPoPJKT != "" {
		typ = "DPoP"
	}
	return &ciba.TokenResponse{AccessToken: fmt.Sprintf("at|jkt=%s|public=%t", r.DPoPJKT, r.PublicClient), TokenType: typ}, nil
}

// dpopDeviceAuth authenticates the confidential device clients "tv" and
// "bound" (dpop_bound_access_tokens) by basic auth with secret "secret".
type dpopDeviceAuth struct{ deviceAuth }

func (dpopDeviceAuth) Authenticate(_ context.Context, r *http.Request, _ url.Values, _ string) (*ciba.Client, error) {
	id, secret, ok := r.BasicAuth()
	switch {
	case ok && id == tv.ID && secret == "secret":
		return tv, nil
	case ok && id == boundTV.ID && secret == "secret":
		return boundTV, nil
	}
	return nil, &ciba.Error{Code: ciba.CodeInvalidClient, Description: "client authentication failed"}
}

// boundTV is a confidential device client with dpop_bound_access_tokens.
var boundTV = &ciba.Client{ID: "bound", Name: "Bound TV", DPoPBoundAccessTokens: true}

// newDPoPDeviceEnv is newDPoPEnv with the device grant on: "tv" and
// "bound" are confidential device clients (dpopDeviceAuth), "cli" a public
// one.
func newDPoPDeviceEnv(t *testing.T) (*dpopEnv, *ciba.Device) {
	t.Helper()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	ring, _ := seal.NewRing(seal.Key{ID: "k", Secret: key})
	st := memory.New()
	clients := map[string]*ciba.Client{tv.ID: tv, cli.ID: cli, boundTV.ID: boundTV}
	svc, err := ciba.NewService(ciba.Config{DefaultExpiry: time.Minute, MaxExpiry: time.Minute, Interval: time.Second, BindingMessageMax: 20, ExpiredGrace: time.Hour},
		ciba.Deps{Store: st, Upstream: fakeUpstream{}, Minter: dpopMinter{}, Sealer: ring, Notifier: nopNotifier{},
			Clients: func(id string) (*ciba.Client, bool) { c, ok := clients[id]; return c, ok }, CallbackKey: key})
	if err != nil {
		t.Fatal(err)
	}
	grant, err := ciba.NewDevice(svc, ciba.DeviceConfig{VerificationURI: dpopIssuer + "/device", Enabled: func(string) bool { return true }})
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{
		Issuer: dpopIssuer, Service: svc, Clients: dpopDeviceAuth{}, Logger: discard(), DPoP: storeVerifier(st),
		Device: &Device{Grant: grant, Public: func(id string) (*ciba.Client, bool) { return cli, id == cli.ID }},
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &dpopEnv{st: st, svc: svc, srv: srv, key: k}, grant
}

// postAs POSTs form to path with the DPoP headers: as the public client
// "cli" by its client_id when client is "", else with basic auth.
func (e *dpopEnv) postAs(t *testing.T, path, client string, form url.Values, proofs ...string) (int, map[string]any) {
	t.Helper()
	if client != "" {
		status, _, body := e.post(t, path, client, form, proofs...)
		return status, body
	}
	f := url.Values{"client_id": {cli.ID}}
	for k, v := range form {
		f[k] = v
	}
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+path, strings.NewReader(f.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for _, p := range proofs {
		req.Header.Add(headerDPoP, p)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

// withKey returns a copy of e that proves another key.
func (e *dpopEnv) withKey(t *testing.T) *dpopEnv {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	o := *e
	o.key = k
	return &o
}

// The device grant with DPoP (RFC 9449 §5, §10): the key is fixed at
// device authorization, by a proof or dpop_jkt, the tokens minted at
// approval carry it, and only a poll with a proof of it redeems them;
// a poll without the key is refused while pending too.
func TestDeviceDPoP(t *testing.T) {
	ctx := context.Background()
	daURL, tokenURL := dpopIssuer+PathDeviceAuthorization, dpopIssuer+PathToken
	start := func(t *testing.T, e *dpopEnv, client string, form url.Values, proofs ...string) *ciba.AuthRequest {
		t.Helper()
		status, body := e.postAs(t, PathDeviceAuthorization, client, form, proofs...)
		if status != http.StatusOK {
			t.Fatalf("device authorization: %d %v", status, body)
		}
		r, err := e.st.GetRequest(ctx, body["device_code"].(string))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	pollForm := func(r *ciba.AuthRequest) url.Values {
		return url.Values{"grant_type": {GrantDeviceCode}, "device_code": {r.ID}}
	}
	wantErr := func(t *testing.T, what string, status int, body map[string]any, code string) {
		t.Helper()
		if status != http.StatusBadRequest || body["error"] != code {
			t.Fatalf("%s: %d %v, want 400 %s", what, status, body, code)
		}
	}

	t.Run("a public client's proof at device authorization binds the request, pending and approved", func(t *testing.T) {
		e, grant := newDPoPDeviceEnv(t)
		r := start(t, e, "", url.Values{"scope": {"openid"}}, e.proof(t, daURL, nil))
		if r.DPoPJKT != e.jktOf(t) || !r.PublicClient {
			t.Fatalf("stored dpop_jkt %q public %t, want %q and public", r.DPoPJKT, r.PublicClient, e.jktOf(t))
		}
		thief := e.withKey(t)
		// Pending: the thief is refused at once, learns nothing of the
		// state and does not slow the device's polls down.
		for range 3 {
			status, body := thief.postAs(t, PathToken, "", pollForm(r), thief.proof(t, tokenURL, nil))
			wantErr(t, "pending, another key", status, body, "invalid_grant")
			status, body = e.postAs(t, PathToken, "", pollForm(r))
			wantErr(t, "pending, no proof", status, body, "invalid_grant")
		}
		status, body := e.postAs(t, PathToken, "", pollForm(r), e.proof(t, tokenURL, nil))
		wantErr(t, "pending, the device's first poll with its key", status, body, "authorization_pending")

		if err := grant.ApproveAs(ctx, r, ciba.User{Subject: "sub-alice", Display: "alice"}); err != nil {
			t.Fatal(err)
		}
		status, body = thief.postAs(t, PathToken, "", pollForm(r), thief.proof(t, tokenURL, nil))
		wantErr(t, "approved, another key", status, body, "invalid_grant")
		status, body = e.postAs(t, PathToken, "", pollForm(r), e.proof(t, tokenURL, nil))
		if status != http.StatusOK || body["token_type"] != "DPoP" || body["access_token"] != "at|jkt="+e.jktOf(t)+"|public=true" {
			t.Fatalf("approved, the key: %d %v, want DPoP tokens bound to the key for a public client", status, body)
		}
	})
	t.Run("dpop_jkt at device authorization binds the request of a confidential client", func(t *testing.T) {
		e, grant := newDPoPDeviceEnv(t)
		r := start(t, e, "tv", url.Values{"dpop_jkt": {e.jktOf(t)}})
		if r.DPoPJKT != e.jktOf(t) || r.PublicClient {
			t.Fatalf("stored dpop_jkt %q public %t", r.DPoPJKT, r.PublicClient)
		}
		if err := grant.ApproveAs(ctx, r, ciba.User{Subject: "sub-alice", Display: "alice"}); err != nil {
			t.Fatal(err)
		}
		status, body := e.postAs(t, PathToken, "tv", pollForm(r))
		wantErr(t, "no proof", status, body, "invalid_grant")
		status, body = e.postAs(t, PathToken, "tv", pollForm(r), e.proof(t, tokenURL, nil))
		if status != http.StatusOK || body["access_token"] != "at|jkt="+e.jktOf(t)+"|public=false" {
			t.Fatalf("with the key: %d %v", status, body)
		}
	})
	t.Run("an unbound device request polled with a proof is invalid_dpop_proof, pending or approved, and stays redeemable", func(t *testing.T) {
		e, grant := newDPoPDeviceEnv(t)
		r := start(t, e, "tv", nil)
		status, body := e.postAs(t, PathToken, "tv", pollForm(r), e.proof(t, tokenURL, nil))
		wantErr(t, "pending", status, body, "invalid_dpop_proof")
		if err := grant.ApproveAs(ctx, r, ciba.User{Subject: "sub-alice", Display: "alice"}); err != nil {
			t.Fatal(err)
		}
		status, body = e.postAs(t, PathToken, "tv", pollForm(r), e.proof(t, tokenURL, nil))
		wantErr(t, "approved", status, body, "invalid_dpop_proof")
		if status, body = e.postAs(t, PathToken, "tv", pollForm(r)); status != http.StatusOK || body["token_type"] != "Bearer" {
			t.Fatalf("without a proof: %d %v", status, body)
		}
	})
	for _, tt := range []struct {
		name, client string
		form         url.Values
		proof        func(t *testing.T, e *dpopEnv) []string
		code         string
	}{
		{"a dpop_bound_access_tokens client without a proof or dpop_jkt is invalid_dpop_proof", "bound", nil,
			func(*testing.T, *dpopEnv) []string { return nil }, "invalid_dpop_proof"},
		{"a proof for the token endpoint is not one for device authorization", "tv", nil,
			func(t *testing.T, e *dpopEnv) []string { return []string{e.proof(t, tokenURL, nil)} }, "invalid_dpop_proof"},
		{"dpop_jkt naming another key than the proof's is invalid_dpop_proof", "tv", url.Values{"dpop_jkt": {"NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"}},
			func(t *testing.T, e *dpopEnv) []string { return []string{e.proof(t, daURL, nil)} }, "invalid_dpop_proof"},
		{"a dpop_jkt that is not a thumbprint is invalid_request", "tv", url.Values{"dpop_jkt": {"short"}},
			func(*testing.T, *dpopEnv) []string { return nil }, "invalid_request"},
	} {
		t.Run(tt.name+", and nothing is stored", func(t *testing.T) {
			e, _ := newDPoPDeviceEnv(t)
			status, body := e.postAs(t, PathDeviceAuthorization, tt.client, tt.form, tt.proof(t, e)...)
			wantErr(t, "device authorization", status, body, tt.code)
			n := 0
			_ = e.st.ListRequests(ctx, func(*ciba.AuthRequest) bool { n++; return true })
			if n != 0 {
				t.Fatalf("%d requests stored", n)
			}
		})
	}
}

// TestCIBADPoPPendingPoll: a poll of a pending CIBA request bound to a
// DPoP key, without a proof of that key, is invalid_grant at once (RFC 9449
// §10), not authorization_pending: the poller learns nothing of the
// user's decision, and its polls do not grow the key holder's interval.
func TestCIBADPoPPendingPoll(t *testing.T) {
	e := newDPoPEnv(t, storeVerifier)
	bcURL, tokenURL := dpopIssuer+PathBCAuthz, dpopIssuer+PathToken
	status, _, body := e.post(t, PathBCAuthz, "plain", aliceForm, e.proof(t, bcURL, nil))
	if status != http.StatusOK {
		t.Fatalf("bc-authorize: %d %v", status, body)
	}
	poll := url.Values{"grant_type": {GrantCIBA}, "auth_req_id": {body["auth_req_id"].(string)}}
	thief := e.withKey(t)
	for range 3 {
		if status, _, body := thief.post(t, PathToken, "plain", poll, thief.proof(t, tokenURL, nil)); status != http.StatusBadRequest || body["error"] != "invalid_grant" ||
			!strings.Contains(body["error_description"].(string), "another DPoP key") {
			t.Fatalf("another key while pending: %d %v, want invalid_grant", status, body)
		}
		if status, _, body := e.post(t, PathToken, "plain", poll); status != http.StatusBadRequest || body["error"] != "invalid_grant" {
			t.Fatalf("no proof while pending: %d %v, want invalid_grant", status, body)
		}
	}
	if status, _, body := e.post(t, PathToken, "plain", poll, e.proof(t, tokenURL, nil)); status != http.StatusBadRequest || body["error"] != "authorization_pending" {
		t.Fatalf("the key holder's first poll: %d %v, want authorization_pending (not slow_down)", status, body)
	}
}
