package app

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
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/cibaproxy/cibaproxy/internal/channel/webhook"
	"github.com/cibaproxy/cibaproxy/internal/config"
)

// notice is one webhook post: the message and its callback token.
type notice struct {
	msg   webhook.Message
	token string
}

// TestQuickstartFlow builds the instance of examples/quickstart.yaml (its
// embedded store in a temporary directory, the webhook channel pointed at
// the test) and serves one flow through its handler: bc-authorize as the
// poll client, the channel's post, the approval through the callback, and
// the poll that gets the tokens. The wiring is tested without the binary.
func TestQuickstartFlow(t *testing.T) {
	// The webhook: what the user's authentication device would receive.
	notices := make(chan notice, 4)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var n notice
		if err := json.NewDecoder(r.Body).Decode(&n.msg); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		n.token = strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		notices <- n
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(hook.Close)

	// The instance's own listener, made first: its address is the issuer.
	srv := httptest.NewUnstartedServer(nil)
	t.Cleanup(srv.Close)
	issuer := "http://" + srv.Listener.Addr().String()
	t.Setenv("CIBAPROXY_DATA", t.TempDir())
	t.Setenv("CIBAPROXY_ISSUER", issuer)
	t.Setenv("CIBAPROXY_WEBHOOK_URL", hook.URL)
	cfg, err := config.Load("../../examples/quickstart.yaml")
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(t.Context(), cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := a.Close(); err != nil {
			t.Error(err)
		}
	})
	if a.Telemetry == nil {
		t.Error("metrics.listen is an address, but there is no telemetry handler")
	}
	srv.Config.Handler = a.Handler
	srv.Start()
	ctx, cancel := context.WithCancel(t.Context())
	ran := make(chan error, 1)
	go func() { ran <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-ran; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
	})

	// do sends a request to the instance and decodes its JSON answer.
	do := func(method, path, contentType, body string, auth func(*http.Request)) (int, map[string]any) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, issuer+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", contentType)
		auth(req)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		var out map[string]any
		if len(b) > 0 {
			if err := json.Unmarshal(b, &out); err != nil {
				t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, b, err)
			}
		}
		return resp.StatusCode, out
	}
	// post is a form posted by the poll client, with client_secret_basic.
	post := func(path string, form url.Values) (int, map[string]any) {
		t.Helper()
		return do(http.MethodPost, path, "application/x-www-form-urlencoded", form.Encode(),
			func(r *http.Request) { r.SetBasicAuth("demo-poll", "demo-poll-secret") })
	}

	code, ack := post("/bc-authorize", url.Values{"scope": {"openid email"}, "login_hint": {"bob"}, "binding_message": {"W-42"}})
	id, _ := ack["auth_req_id"].(string)
	if code != http.StatusOK || id == "" {
		t.Fatalf("bc-authorize: %d %v", code, ack)
	}

	var n notice
	select {
	case n = <-notices:
	case <-time.After(30 * time.Second):
		t.Fatal("the webhook was never called")
	}
	if n.msg.ClientID != "demo-poll" || n.msg.LoginHint != "bob" || n.msg.BindingMessage != "W-42" || n.token == "" {
		t.Fatalf("webhook message %+v (token set: %v)", n.msg, n.token != "")
	}
	if want := issuer + "/approve/" + n.msg.ID; n.msg.ApproveURL != want {
		t.Errorf("approve_url %q, want %q", n.msg.ApproveURL, want)
	}
	cb, err := url.Parse(n.msg.CallbackURL)
	if err != nil || !strings.HasPrefix(n.msg.CallbackURL, issuer) {
		t.Fatalf("callback_url %q", n.msg.CallbackURL)
	}
	code, body := do(http.MethodPost, cb.Path, "application/json", `{"status":"approved"}`,
		func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+n.token) })
	if code/100 != 2 {
		t.Fatalf("callback: %d %v", code, body)
	}

	code, tokens := post("/token", url.Values{"grant_type": {"urn:openid:params:grant-type:ciba"}, "auth_req_id": {id}})
	if code != http.StatusOK {
		t.Fatalf("token: %d %v", code, tokens)
	}
	for _, k := range []string{"access_token", "id_token"} {
		if s, _ := tokens[k].(string); s == "" {
			t.Errorf("token response lacks %s: %v", k, tokens)
		}
	}
	if tokens["token_type"] != "Bearer" {
		t.Errorf("token_type %v, want Bearer", tokens["token_type"])
	}

	// DPoP (RFC 9449): discovery lists the proof algorithms, and a refresh
	// with a proof gets an access token bound to its key.
	code, doc := do(http.MethodGet, "/.well-known/openid-configuration", "", "", func(*http.Request) {})
	if algs, _ := doc["dpop_signing_alg_values_supported"].([]any); code != http.StatusOK || !slices.Contains(algs, any("ES256")) {
		t.Errorf("discovery: %d dpop_signing_alg_values_supported %v", code, doc["dpop_signing_alg_values_supported"])
	}
	// The issuer is the discovery document's issuer and the ID token's iss,
	// byte for byte (OIDC Core §3.1.3.7, OIDC Discovery §4.3), and every
	// endpoint is the issuer, one slash, then its path (no "//token").
	if doc["issuer"] != issuer {
		t.Errorf("discovery issuer %v, want %q", doc["issuer"], issuer)
	}
	for k, v := range doc {
		if u, ok := v.(string); ok && strings.HasSuffix(k, "_endpoint") || k == "jwks_uri" {
			if !strings.HasPrefix(u, issuer+"/") || strings.Contains(strings.TrimPrefix(u, "http://"), "//") {
				t.Errorf("discovery %s = %q, want %q followed by one slash and a path", k, u, issuer)
			}
		}
	}
	idt, _ := tokens["id_token"].(string)
	if parts := strings.Split(idt, "."); len(parts) == 3 {
		raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
		var c struct {
			Iss string `json:"iss"`
		}
		if err := json.Unmarshal(raw, &c); err != nil || c.Iss != issuer {
			t.Errorf("ID token iss %q (%v), want %q", c.Iss, err, issuer)
		}
	}
	rt, _ := tokens["refresh_token"].(string)
	if rt == "" {
		t.Fatal("no refresh token to refresh with DPoP")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{EmbedJWK: true}).WithType("dpop+jwt"))
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(map[string]any{"jti": rand.Text(), "htm": "POST", "htu": issuer + "/token", "iat": time.Now().Unix()})
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	proof, _ := jws.CompactSerialize()
	code, bound := do(http.MethodPost, "/token", "application/x-www-form-urlencoded", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}.Encode(),
		func(r *http.Request) { r.SetBasicAuth("demo-poll", "demo-poll-secret"); r.Header.Set("DPoP", proof) })
	if code != http.StatusOK || bound["token_type"] != "DPoP" {
		t.Fatalf("refresh with DPoP: %d %v", code, bound)
	}
	at, _ := bound["access_token"].(string)
	parts := strings.Split(at, ".")
	claims, err := base64.RawURLEncoding.DecodeString(parts[min(1, len(parts)-1)])
	if err != nil {
		t.Fatal(err)
	}
	jwk := jose.JSONWebKey{Key: key.Public()}
	tp, _ := jwk.Thumbprint(crypto.SHA256)
	if want := `"jkt":"` + base64.RawURLEncoding.EncodeToString(tp) + `"`; !strings.Contains(string(claims), want) {
		t.Errorf("access token claims %s lack cnf %s", claims, want)
	}

	// The token services (RFC 7662, RFC 7009, OIDC Core §5.3) are in
	// discovery, and userinfo takes the DPoP-bound token with a proof.
	for _, k := range []string{"introspection_endpoint", "revocation_endpoint", "userinfo_endpoint"} {
		if u, _ := doc[k].(string); !strings.HasPrefix(u, issuer+"/") {
			t.Errorf("discovery %s = %v", k, doc[k])
		}
	}
	if m, _ := doc["revocation_endpoint_auth_methods_supported"].([]any); !slices.Contains(m, any("client_secret_basic")) {
		t.Errorf("discovery revocation_endpoint_auth_methods_supported = %v", doc["revocation_endpoint_auth_methods_supported"])
	}
	sum := sha256.Sum256([]byte(at))
	payload, _ = json.Marshal(map[string]any{"jti": rand.Text(), "htm": "GET", "htu": issuer + "/userinfo", "iat": time.Now().Unix(), "ath": base64.RawURLEncoding.EncodeToString(sum[:])})
	if jws, err = signer.Sign(payload); err != nil {
		t.Fatal(err)
	}
	proof, _ = jws.CompactSerialize()
	code, info := do(http.MethodGet, "/userinfo", "", "", func(r *http.Request) { r.Header.Set("Authorization", "DPoP "+at); r.Header.Set("DPoP", proof) })
	if code != http.StatusOK || info["email"] != "bob@example.com" {
		t.Errorf("userinfo with the DPoP-bound token: %d %v", code, info)
	}
}
