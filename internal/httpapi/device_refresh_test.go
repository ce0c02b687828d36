package httpapi

import (
	"context"
	"crypto/rand"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/seal"
	"github.com/cibaproxy/cibaproxy/internal/store/memory"
)

// clientRefresher records the client each refresh was made for.
type clientRefresher struct {
	mu      sync.Mutex
	clients []string
}

func (f *clientRefresher) RefreshBound(_ context.Context, clientID, _, _ string, _ ciba.Binding, _ time.Time) (*ciba.TokenResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.clients = append(f.clients, clientID)
	return &ciba.TokenResponse{AccessToken: "at", TokenType: "Bearer", RefreshToken: "rt2"}, nil
}

// TestPublicDeviceClientRefreshes: a public device client (token endpoint
// auth method none) was given refresh tokens with its device_code tokens
// but could not authenticate at the refresh_token grant. It now refreshes
// with its client_id alone, like it polls (the refresh tokens are rotated
// and reuse revokes the family, RFC 9700 §4.14.2); a confidential client
// still needs its credentials.
func TestPublicDeviceClientRefreshes(t *testing.T) {
	key := make([]byte, 32)
	rand.Read(key)
	ring, _ := seal.NewRing(seal.Key{ID: "k", Secret: key})
	clients := map[string]*ciba.Client{tv.ID: tv, cli.ID: cli}
	svc, err := ciba.NewService(ciba.Config{DefaultExpiry: time.Minute, MaxExpiry: time.Minute, Interval: time.Second, BindingMessageMax: 20, ExpiredGrace: time.Hour},
		ciba.Deps{Store: memory.New(), Upstream: fakeUpstream{}, Minter: fakeUpstream{}, Sealer: ring, Notifier: nopNotifier{},
			Clients: func(id string) (*ciba.Client, bool) { c, ok := clients[id]; return c, ok }, CallbackKey: key})
	if err != nil {
		t.Fatal(err)
	}
	grant, err := ciba.NewDevice(svc, ciba.DeviceConfig{VerificationURI: "http://op.test/device", Enabled: func(string) bool { return true }})
	if err != nil {
		t.Fatal(err)
	}
	ref := &clientRefresher{}
	s := &Server{
		Issuer: "http://op.test", Service: svc, Clients: deviceAuth{}, Logger: discard(), Refresher: ref,
		Device: &Device{Grant: grant, Public: func(id string) (*ciba.Client, bool) { return cli, id == cli.ID }},
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	e := &deviceEnv{srv: srv}
	refresh := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"rt"}}

	with := func(extra url.Values) url.Values {
		f := url.Values{}
		for k, v := range refresh {
			f[k] = v
		}
		for k, v := range extra {
			f[k] = v
		}
		return f
	}
	if status, m := e.call(t, PathToken, "", with(url.Values{"client_id": {"cli"}})); status != 200 || m["access_token"] != "at" {
		t.Fatalf("public client's refresh: %d %v, want 200 with tokens", status, m)
	}
	if status, m := e.call(t, PathToken, "", with(url.Values{"client_id": {"tv"}})); status != 401 || m["error"] != "invalid_client" {
		t.Fatalf("a confidential client's refresh without credentials: %d %v, want 401 invalid_client", status, m)
	}
	if status, m := e.call(t, PathToken, "tv", refresh); status != 200 {
		t.Fatalf("a confidential client's refresh: %d %v", status, m)
	}
	ref.mu.Lock()
	defer ref.mu.Unlock()
	if len(ref.clients) != 2 || ref.clients[0] != "cli" || ref.clients[1] != "tv" {
		t.Fatalf("refreshes were made for %v, want [cli tv]", ref.clients)
	}
}
