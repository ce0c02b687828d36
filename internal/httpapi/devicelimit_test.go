package httpapi

import (
	"encoding/json"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/limit"
)

// deviceAuthorize POSTs a device authorization as the public client cli
// (user "") or with Basic user:user-secret, with X-Forwarded-For xff when
// set, and returns the status, Retry-After and the JSON answer.
func (e *deviceEnv) deviceAuthorize(t *testing.T, user, xff string) (int, string, map[string]any) {
	t.Helper()
	form := url.Values{}
	if user == "" {
		form.Set("client_id", cli.ID)
	}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, e.srv.URL+PathDeviceAuthorization, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(user, user+"-secret")
	}
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatalf("device authorization: not JSON: %v", err)
	}
	return resp.StatusCode, resp.Header.Get("Retry-After"), m
}

// TestDeviceAuthorizationPerAddress: Limits.DeviceAuthorization is a
// public client's per-address share of its BCAuthorize budget. Past the
// share, the address gets HTTP 429 slow_down with Retry-After naming the
// address, whatever X-Forwarded-For it sends when no proxy is trusted,
// and the client's bucket is not touched; a confidential client at the
// same address is not held by it; behind a trusted proxy the forwarded
// address is the key. A request the client's bucket refuses gives the
// address's token back.
func TestDeviceAuthorizationPerAddress(t *testing.T) {
	t.Run("share", func(t *testing.T) {
		perClient := limit.New(limit.Rate{Requests: 100, Per: time.Hour}, 0)
		e := newDeviceEnvWith(t, deviceOpts{limits: &Limits{
			BCAuthorize:         perClient,
			DeviceAuthorization: limit.New(limit.Rate{Requests: 2, Per: time.Hour}, 0),
		}})
		for i := range 2 {
			if status, _, m := e.deviceAuthorize(t, "", ""); status != http.StatusOK {
				t.Fatalf("public request %d within the share: %d %v", i+1, status, m)
			}
		}
		// The header is not believed from an untrusted peer.
		for _, xff := range []string{"", "203.0.113.9"} {
			status, wait, m := e.deviceAuthorize(t, "", xff)
			d, _ := m["error_description"].(string)
			if status != http.StatusTooManyRequests || m["error"] != "slow_down" || wait == "" ||
				!strings.Contains(d, "from this address") || !strings.Contains(d, cli.ID) {
				t.Fatalf("past the share (X-Forwarded-For %q): %d Retry-After %q %v; want 429 slow_down naming the address", xff, status, wait, m)
			}
		}
		// The two refusals took nothing from the client's budget: 98 left.
		now := e.clock.Now()
		for i := range 98 {
			if ok, _, _ := perClient.Allow(t.Context(), cli.ID, now); !ok {
				t.Fatalf("the client's budget has %d tokens left, want 98", i)
			}
		}
		// A confidential client is not counted per address.
		for i := range 5 {
			if status, _, m := e.deviceAuthorize(t, "tv", ""); status != http.StatusOK {
				t.Fatalf("confidential request %d: %d %v", i+1, status, m)
			}
		}
	})
	t.Run("trusted proxy", func(t *testing.T) {
		e := newDeviceEnvWith(t, deviceOpts{limits: &Limits{
			DeviceAuthorization: limit.New(limit.Rate{Requests: 1, Per: time.Hour}, 0),
			TrustedProxies:      []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
			ClientIPHeader:      "X-Forwarded-For",
		}})
		for _, xff := range []string{"203.0.113.9", "203.0.113.10"} {
			if status, _, m := e.deviceAuthorize(t, "", xff); status != http.StatusOK {
				t.Fatalf("first request from %s: %d %v", xff, status, m)
			}
		}
		if status, _, m := e.deviceAuthorize(t, "", "203.0.113.9"); status != http.StatusTooManyRequests {
			t.Fatalf("second request from 203.0.113.9: %d %v, want 429", status, m)
		}
	})
	t.Run("client budget refusal gives the address token back", func(t *testing.T) {
		perAddr := limit.New(limit.Rate{Requests: 3, Per: time.Hour}, 0)
		e := newDeviceEnvWith(t, deviceOpts{limits: &Limits{
			BCAuthorize:         limit.New(limit.Rate{Requests: 2, Per: time.Hour}, 0),
			DeviceAuthorization: perAddr,
		}})
		for i := range 2 {
			if status, _, m := e.deviceAuthorize(t, "", ""); status != http.StatusOK {
				t.Fatalf("request %d: %d %v", i+1, status, m)
			}
		}
		status, _, m := e.deviceAuthorize(t, "", "")
		if d, _ := m["error_description"].(string); status != http.StatusTooManyRequests || strings.Contains(d, "from this address") {
			t.Fatalf("past the client's budget: %d %v; want 429 naming the client's budget", status, m)
		}
		key := cli.ID + "\x00127.0.0.1"
		if ok, _, _ := perAddr.Allow(t.Context(), key, e.clock.Now()); !ok {
			t.Fatal("the address's share lost the token of the request the client's budget refused")
		}
		if ok, _, _ := perAddr.Allow(t.Context(), key, e.clock.Now()); ok {
			t.Fatal("the address's share has more than one token left, want one")
		}
	})
}
