package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/config"
	"github.com/cibaproxy/cibaproxy/internal/store/redis/redistest"
)

// The shipped defaults the device authorization limits are tested at:
// limits.bc_authorize_per_client (1200 per 1m, which counts device
// authorizations too) and limits.device_authorization_per_ip (30 per 1m,
// one address's share of a public client's).
const (
	devicePerClient  = 1200
	devicePerAddress = 30
)

// TestDeviceAuthorizationLimitShippedDefault: with examples/quickstart.yaml
// unchanged, the public demo-device client (token_endpoint_auth_method
// none: its client_id is no secret) is held to its per-address share and
// to its per-client budget; see checkDeviceAuthorizationLimits.
func TestDeviceAuthorizationLimitShippedDefault(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	issuer := startInstance(t, func() *config.Config {
		return loadShipped(t, "store:\n  type: embedded\n", "store:\n  type: embedded\n")
	}, Options{Now: func() time.Time { return now }})
	checkDeviceAuthorizationLimits(t, []string{issuer})
}

// TestDeviceAuthorizationLimitSharedOnRedis: the same as
// TestDeviceAuthorizationLimitShippedDefault with the quick start's store
// switched to a real redis-server and two instances on it, every burst
// spread over both: the limits are one budget in Redis, not one per
// instance.
func TestDeviceAuthorizationLimitSharedOnRedis(t *testing.T) {
	srv := redistest.Start(t)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	store := "store:\n  type: redis\n  redis:\n    addrs: [\"" + srv.Addr() + "\"]\n    key_prefix: \"device-limit:\"\n"
	var issuers []string
	for range 2 {
		issuers = append(issuers, startInstance(t, func() *config.Config {
			return loadShipped(t, "store:\n  type: embedded\n  path: ${CIBAPROXY_DATA:-./data}/cibaproxy.db\n", store)
		}, Options{Now: func() time.Time { return now }}))
	}
	checkDeviceAuthorizationLimits(t, issuers)
}

// loadShipped loads examples/quickstart.yaml with old replaced by new (the
// same text: unchanged).
func loadShipped(t *testing.T, old, new string) *config.Config {
	t.Helper()
	shipped, err := os.ReadFile("../../examples/quickstart.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(shipped), old) {
		t.Fatalf("examples/quickstart.yaml has no %q", old)
	}
	path := filepath.Join(t.TempDir(), "cibaproxy.yaml")
	if err := os.WriteFile(path, []byte(strings.Replace(string(shipped), old, new, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// deviceAnswer is the answer to a device authorization.
type deviceAnswer struct {
	status     int
	retryAfter string
	body       map[string]any
	raw        string
}

// accepted reports whether a is a device authorization response.
func (a deviceAnswer) accepted() bool {
	return a.status == http.StatusOK && a.body["device_code"] != nil
}

// refused reports whether a is HTTP 429 with Retry-After and an RFC 6749
// JSON error slow_down whose description names demo-device and, when
// byAddress, the address (the per-address share), else not (the client's
// budget).
func (a deviceAnswer) refused(byAddress bool) bool {
	d, _ := a.body["error_description"].(string)
	return a.status == http.StatusTooManyRequests && a.body["error"] == "slow_down" && a.retryAfter != "" &&
		strings.Contains(d, "demo-device") && strings.Contains(d, "from this address") == byAddress
}

// fromAddr is an HTTP client whose connections come from the loopback
// address ip, so the server sees it as another client address (the quick
// start trusts no proxy: the address is the TCP peer).
func fromAddr(t *testing.T, ip string) *http.Client {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 10 * time.Second}
	tr := &http.Transport{MaxIdleConnsPerHost: 16, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		return d.DialContext(ctx, network, addr)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// authorizeDevice asks issuer for a device code as demo-device, with c.
func authorizeDevice(ctx context.Context, c *http.Client, issuer string) deviceAnswer {
	form := url.Values{"client_id": {"demo-device"}, "scope": {"openid"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, issuer+"/device_authorization", strings.NewReader(form.Encode()))
	if err != nil {
		return deviceAnswer{raw: err.Error()}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.Do(req)
	if err != nil {
		return deviceAnswer{raw: err.Error()}
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := deviceAnswer{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), raw: string(raw)}
	_ = json.Unmarshal(raw, &a.body)
	return a
}

// deviceBurst sends n device authorizations as demo-device, 16 at a time:
// request i from clients[i%len(clients)] to issuers[i%len(issuers)].
func deviceBurst(t *testing.T, n int, clients []*http.Client, issuers []string) []deviceAnswer {
	t.Helper()
	const workers = 16
	jobs := make(chan int, n)
	for i := range n {
		jobs <- i
	}
	close(jobs)
	answers := make([]deviceAnswer, n)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				answers[i] = authorizeDevice(t.Context(), clients[i%len(clients)], issuers[i%len(issuers)])
			}
		}()
	}
	wg.Wait()
	return answers
}

// checkDeviceAuthorizationLimits runs, on the instances at issuers (one
// store, the quick start's limits), with a clock that stands still so no
// token comes back:
//
//  1. a parallel burst of device authorizations by demo-device from one
//     address (127.0.0.1), devicePerAddress + 20: exactly devicePerAddress
//     are stored, the others are HTTP 429 slow_down with Retry-After
//     naming the address's share;
//  2. one from another address (127.0.0.2): stored;
//  3. a parallel burst spread over 80 other addresses (at most 15 each,
//     within their share) of what is left of the client's budget + 30:
//     exactly what is left is stored, the others are 429 slow_down naming
//     the client's budget. So the client stored devicePerClient requests
//     in all: the refused ones of step 1 took nothing from its budget.
//
// Bounded: devicePerClient + 51 requests, 16 at a time.
func checkDeviceAuthorizationLimits(t *testing.T, issuers []string) {
	const over, overClient, spread = 20, 30, 80
	count := func(what string, answers []deviceAnswer, byAddress bool) (ok, refused int) {
		t.Helper()
		for _, a := range answers {
			switch {
			case a.accepted():
				ok++
			case a.refused(byAddress):
				refused++
			default:
				t.Fatalf("%s: %d Retry-After %q %s; want 200 with a device_code or 429 slow_down (by address: %v)", what, a.status, a.retryAfter, a.raw, byAddress)
			}
		}
		return ok, refused
	}

	one := []*http.Client{fromAddr(t, "127.0.0.1")}
	ok, refused := count("burst from one address", deviceBurst(t, devicePerAddress+over, one, issuers), true)
	if ok != devicePerAddress || refused != over {
		t.Fatalf("a burst of %d from one address: %d stored and %d refused, want %d (limits.device_authorization_per_ip) and %d",
			devicePerAddress+over, ok, refused, devicePerAddress, over)
	}

	if a := authorizeDevice(t.Context(), fromAddr(t, "127.0.0.2"), issuers[len(issuers)-1]); !a.accepted() {
		t.Fatalf("from another address after the burst: %d %s, want 200", a.status, a.raw)
	}

	var many []*http.Client
	for i := range spread {
		many = append(many, fromAddr(t, fmt.Sprintf("127.0.0.%d", 3+i)))
	}
	left := devicePerClient - devicePerAddress - 1
	ok, refused = count("burst from many addresses", deviceBurst(t, left+overClient, many, issuers), false)
	if ok != left || refused != overClient {
		t.Fatalf("a burst of %d over %d addresses: %d stored and %d refused, want %d (what is left of limits.bc_authorize_per_client %d: the %d refused before took none) and %d",
			left+overClient, spread, ok, refused, left, devicePerClient, over, overClient)
	}
}
