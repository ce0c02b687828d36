package app

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/config"
)

// TestIntrospectLimitShippedDefault: with examples/quickstart.yaml's limits
// unchanged (the defaults: limits.introspect_per_client 1200 per 1m), a
// parallel burst of introspections by one client past the limit is answered
// 200 exactly as many times as the limit allows, and every other request is
// HTTP 429 with Retry-After and an RFC 6749 JSON error slow_down naming
// the client, as at bc-authorize; another client is not held by it. The
// clock stands still, so no token comes back during the burst. The quick
// start has no resource server: two are appended to its clients.
// Bounded: limit + 40 requests, 16 at a time.
func TestIntrospectLimitShippedDefault(t *testing.T) {
	const limit, over, workers = 1200, 40, 16
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	issuer := startInstance(t, func() *config.Config {
		shipped, err := os.ReadFile("../../examples/quickstart.yaml")
		if err != nil {
			t.Fatal(err)
		}
		// The quick start as shipped, with two resource servers appended
		// to its clients (the last section).
		path := filepath.Join(t.TempDir(), "cibaproxy.yaml")
		rs := "\n  - client_id: rs1\n    client_secret: rs1-secret\n    introspection: true\n" +
			"  - client_id: rs2\n    client_secret: rs2-secret\n    introspection: true\n"
		if err := os.WriteFile(path, append(shipped, rs...), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}, Options{Now: func() time.Time { return now }})
	// One connection per worker, kept: the burst measures the limit, not
	// the dialing.
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	t.Cleanup(client.CloseIdleConnections)
	type answer struct {
		status     int
		retryAfter string
		body       map[string]any
		raw        string
	}
	introspect := func(id, secret string) answer {
		form := url.Values{"token": {"not-a-token-of-ours"}, "token_type_hint": {"access_token"}}
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, issuer+"/introspect", strings.NewReader(form.Encode()))
		if err != nil {
			return answer{raw: err.Error()}
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(id, secret)
		resp, err := client.Do(req)
		if err != nil {
			return answer{raw: err.Error()}
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		a := answer{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), raw: string(raw)}
		_ = json.Unmarshal(raw, &a.body)
		return a
	}

	total := limit + over
	jobs := make(chan struct{}, total)
	for range total {
		jobs <- struct{}{}
	}
	close(jobs)
	answers := make(chan answer, total)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				answers <- introspect("rs1", "rs1-secret")
			}
		}()
	}
	wg.Wait()
	close(answers)
	var ok, refused int
	for a := range answers {
		switch {
		case a.status == http.StatusOK && a.body["active"] == false:
			ok++
		case a.status == http.StatusTooManyRequests && a.body["error"] == "slow_down" && a.retryAfter != "" &&
			strings.Contains(a.body["error_description"].(string), "rs1"):
			refused++
		default:
			t.Fatalf("an introspection in the burst: %d Retry-After %q %s; want 200 {\"active\":false} or 429 slow_down naming rs1", a.status, a.retryAfter, a.raw)
		}
	}
	if ok != limit || refused != over {
		t.Fatalf("%d answered, %d refused; want %d answered (the limit), %d refused", ok, refused, limit, over)
	}
	if a := introspect("rs2", "rs2-secret"); a.status != http.StatusOK {
		t.Fatalf("another client is held by rs1's limit: %d %s", a.status, a.raw)
	}
}
