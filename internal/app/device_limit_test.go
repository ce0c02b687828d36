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

// TestDeviceAuthorizationLimitShippedDefault: with examples/quickstart.yaml
// unchanged (limits.bc_authorize_per_client 1200 per 1m, which counts
// device authorizations too), a parallel burst of device authorizations by
// the public demo-device client past the limit stores exactly as many
// requests as the limit allows; every other request is HTTP 429 with
// Retry-After and an RFC 6749 JSON error slow_down. The clock stands still,
// so no token comes back during the burst. Bounded: limit + 30 requests,
// 16 at a time.
func TestDeviceAuthorizationLimitShippedDefault(t *testing.T) {
	const limit, over, workers = 1200, 30, 16
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	issuer := startInstance(t, func() *config.Config {
		path := filepath.Join(t.TempDir(), "cibaproxy.yaml")
		shipped, err := os.ReadFile("../../examples/quickstart.yaml")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, shipped, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}, Options{Now: func() time.Time { return now }})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	t.Cleanup(client.CloseIdleConnections)

	type answer struct {
		status     int
		retryAfter string
		body       map[string]any
		raw        string
	}
	authorize := func() answer {
		form := url.Values{"client_id": {"demo-device"}, "scope": {"openid"}}
		resp, err := client.PostForm(issuer+"/device_authorization", form)
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
				answers <- authorize()
			}
		}()
	}
	wg.Wait()
	close(answers)
	var ok, refused int
	for a := range answers {
		switch {
		case a.status == http.StatusOK && a.body["device_code"] != nil:
			ok++
		case a.status == http.StatusTooManyRequests && a.body["error"] == "slow_down" && a.retryAfter != "" &&
			strings.Contains(a.body["error_description"].(string), "demo-device"):
			refused++
		default:
			t.Errorf("unexpected answer: %d %q", a.status, a.raw)
		}
	}
	if ok != limit || refused != over {
		t.Errorf("%d accepted and %d refused, want %d and %d", ok, refused, limit, over)
	}
}
