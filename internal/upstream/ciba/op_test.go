package cibaup

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"

	"github.com/cibaproxy/cibaproxy/internal/upstream/idp"
	"github.com/cibaproxy/cibaproxy/internal/upstream/idp/idptest"
)

// testIdP is a minimal CIBA identity provider for the error paths of this
// package: discovery and scripted backchannel and token endpoints that
// record what they received. It listens on 127.0.0.1 (httptest).
type testIdP struct {
	t    *testing.T
	srv  *httptest.Server
	stop chan struct{} // closed at cleanup: hanging handlers return

	mu             sync.Mutex
	discoveryDown  bool   // discovery answers 503
	noBackchannel  bool   // the document has no backchannel_authentication_endpoint
	issuerOverride string // the issuer the discovery document claims
	modes          []string
	authzTypes     []string // authorization_details_types_supported; nil: absent
	discoveryHits  int
	backchannel    http.HandlerFunc // nil: a fixed acknowledgement
	token          http.HandlerFunc // nil: a fixed token response
	requests       []received
}

// received is what the backchannel or token endpoint received.
type received struct {
	Path   string
	Form   url.Values
	Header http.Header
}

const (
	cibaClient = "ciba-client"
	idpClient  = "idp-client:with/odd+chars"
	idpSecret  = "idp-secret&do-not-leak+/="
	upstreamID = "upstream-auth-req-id-do-not-leak"
	tokensJSON = `{"access_token":"idp-at","token_type":"Bearer","expires_in":300,"id_token":"idp.id.token"}`
)

func newTestIdP(t *testing.T) *testIdP {
	t.Helper()
	op := &testIdP{t: t, stop: make(chan struct{}), modes: []string{"poll", "ping"}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", op.discovery)
	mux.HandleFunc("POST /bc-authorize", op.record(func(op *testIdP) http.HandlerFunc { return op.backchannel }, func(w http.ResponseWriter) {
		idptest.WriteJSON(w, http.StatusOK, map[string]any{"auth_req_id": upstreamID, "expires_in": 120, "interval": 2})
	}))
	mux.HandleFunc("POST /token", op.record(func(op *testIdP) http.HandlerFunc { return op.token }, func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(tokensJSON))
	}))
	op.srv = httptest.NewServer(mux)
	t.Cleanup(op.srv.Close)
	t.Cleanup(func() { close(op.stop) }) // runs first
	return op
}

func (op *testIdP) issuer() string { return op.srv.URL }

func (op *testIdP) discovery(w http.ResponseWriter, _ *http.Request) {
	op.mu.Lock()
	op.discoveryHits++
	down, iss, noBC, modes, authzTypes := op.discoveryDown, op.issuerOverride, op.noBackchannel, op.modes, op.authzTypes
	op.mu.Unlock()
	if down {
		http.Error(w, "maintenance", http.StatusServiceUnavailable)
		return
	}
	if iss == "" {
		iss = op.issuer()
	}
	doc := map[string]any{
		"issuer":                              iss,
		"authorization_endpoint":              op.issuer() + "/authorize",
		"token_endpoint":                      op.issuer() + "/token",
		"jwks_uri":                            op.issuer() + "/jwks",
		"grant_types_supported":               []string{"urn:openid:params:grant-type:ciba"},
		"backchannel_authentication_endpoint": op.issuer() + "/bc-authorize",
	}
	if modes != nil {
		doc["backchannel_token_delivery_modes_supported"] = modes
	}
	if authzTypes != nil {
		doc["authorization_details_types_supported"] = authzTypes
	}
	if noBC {
		delete(doc, "backchannel_authentication_endpoint")
	}
	idptest.WriteJSON(w, http.StatusOK, doc)
}

// record returns a handler that records the request and runs the scripted
// handler, or def when none is set.
func (op *testIdP) record(script func(*testIdP) http.HandlerFunc, def func(http.ResponseWriter)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad form", http.StatusBadRequest)
			return
		}
		op.mu.Lock()
		op.requests = append(op.requests, received{Path: r.URL.Path, Form: r.PostForm, Header: r.Header.Clone()})
		h := script(op)
		op.mu.Unlock()
		if h != nil {
			h(w, r)
			return
		}
		def(w)
	}
}

// hang is a handler that answers only when the client gives up (or the
// test ends).
func (op *testIdP) hang(_ http.ResponseWriter, r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-op.stop:
	}
}

func (op *testIdP) set(f func(op *testIdP)) {
	op.mu.Lock()
	defer op.mu.Unlock()
	f(op)
}

func (op *testIdP) hits() int {
	op.mu.Lock()
	defer op.mu.Unlock()
	return op.discoveryHits
}

// sent returns the requests the CIBA endpoints received.
func (op *testIdP) sent() []received {
	op.mu.Lock()
	defer op.mu.Unlock()
	return append([]received(nil), op.requests...)
}

func (op *testIdP) last() received {
	op.t.Helper()
	s := op.sent()
	if len(s) == 0 {
		op.t.Fatal("the identity provider received no request")
	}
	return s[len(s)-1]
}

// answer returns a handler writing status and body (JSON when it starts
// with '{').
func answer(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		if len(body) > 0 && body[0] == '{' {
			w.Header().Set("Content-Type", "application/json")
		} else {
			w.Header().Set("Content-Type", "text/html")
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}
}

func testConfig(op *testIdP) Config {
	return Config{
		Issuer:  op.issuer(),
		Clients: map[string]Credentials{cibaClient: {Credentials: idp.Credentials{ClientID: idpClient, ClientSecret: idpSecret}}},
	}
}

// newTestUpstream returns an upstream on op with a settable clock.
func newTestUpstream(t *testing.T, op *testIdP, edit func(*Config)) (*Upstream, *idptest.Clock) {
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
