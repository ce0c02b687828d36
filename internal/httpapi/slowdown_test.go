package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/seal"
)

// TestSlowDownRetryAfterGrows: each slow_down's Retry-After says the
// client's interval as it now is, grown by 5 s at each early poll (CIBA
// §11): 5 s announced, then 10 and 15 after two slow_downs in a row; a
// client that waits what the last one said polls on time. On the memory
// store and on Redis (whose instance answers early polls from what it
// knows, and otherwise through its poll script).
func TestSlowDownRetryAfterGrows(t *testing.T) {
	for _, b := range testStores() {
		t.Run(b.name, func(t *testing.T) {
			clock := &benchClock{t: time.Now()}
			key := make([]byte, 32)
			_, _ = rand.Read(key)
			ring, _ := seal.NewRing(seal.Key{ID: "k", Secret: key})
			svc, err := ciba.NewService(ciba.Config{DefaultExpiry: 10 * time.Minute, MaxExpiry: 10 * time.Minute,
				Interval: 5 * time.Second, PollTolerance: 500 * time.Millisecond, BindingMessageMax: 20},
				ciba.Deps{Store: b.open(t), Upstream: fakeUpstream{}, Minter: fakeUpstream{}, Sealer: ring, Notifier: nopNotifier{},
					Clients: func(string) (*ciba.Client, bool) { return bank, true }, CallbackKey: key, Now: clock.now})
			if err != nil {
				t.Fatal(err)
			}
			ack, err := svc.Authorize(t.Context(), bank, ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: "alice"}})
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer((&Server{Issuer: "https://ciba.example", Service: svc, Clients: basicAuth{}, Logger: discard(), Now: clock.now,
				Discovery: func(context.Context) (map[string]any, error) { return nil, nil }}).Handler())
			t.Cleanup(srv.Close)
			poll := func(wantCode, wantRetry string) {
				t.Helper()
				body := url.Values{"grant_type": {GrantCIBA}, "auth_req_id": {ack.AuthReqID}}.Encode()
				req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+PathToken, strings.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.SetBasicAuth(bank.ID, "bank-secret")
				resp, err := srv.Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				var answer struct {
					Error string `json:"error"`
				}
				if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil {
					t.Fatal(err)
				}
				if e := answer.Error; e != wantCode || resp.Header.Get("Retry-After") != wantRetry {
					t.Fatalf("poll: %s with Retry-After %q, want %s with %q", answer.Error, resp.Header.Get("Retry-After"), wantCode, wantRetry)
				}
			}
			poll("authorization_pending", "")
			clock.add(time.Second)
			poll("slow_down", "10") // the interval is now 5 + 5 s
			clock.add(time.Second)
			poll("slow_down", "15") // and now 5 + 10 s
			clock.add(15 * time.Second)
			poll("authorization_pending", "") // waited what it said: on time
		})
	}
}
