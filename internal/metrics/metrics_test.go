package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/store/memory"
	"github.com/cibaproxy/cibaproxy/internal/store/storetest"
)

// scrape returns the exposition text of m.
func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, _ := io.ReadAll(rec.Body)
	return string(b)
}

func TestCountsAndLabels(t *testing.T) {
	m := New()
	m.ObserveRequest("/token", "demo-poll", "slow_down", time.Millisecond)
	m.ObserveRequest("/token", "demo-poll", "slow_down", time.Millisecond)
	m.ObserveDelivery("ping", nil)
	m.ObserveDelivery("webhook", errors.New("refused"))
	m.ObserveRelayPoll("pending", 0)
	m.ObserveRelayPoll("tokens", 2)

	st := m.Store(memory.New())
	now := time.Now()
	r := &ciba.AuthRequest{ID: "r1", ApprovalID: "a1", ClientID: "c", Mode: ciba.ModePing, Status: ciba.StatusPending,
		Scopes: []string{"openid"}, CreatedAt: now, ExpiresAt: now.Add(time.Minute), Interval: time.Second}
	if err := st.CreateRequest(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	if _, err := st.GetRequest(context.Background(), "missing"); !errors.Is(err, ciba.ErrNotFound) {
		t.Fatal(err)
	}
	_ = st.Close()
	if _, err := st.GetRequest(context.Background(), "r1"); !errors.Is(err, ciba.ErrUnavailable) {
		t.Fatalf("get after close: %v", err)
	}
	m.WatchRequests(m.Store(memoryWith(t, r)), time.Now, time.Minute)

	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusBadGateway) }))
	defer idp.Close()
	hc := &http.Client{Transport: m.Transport("oidc", nil)}
	if resp, err := hc.Get(idp.URL); err == nil {
		resp.Body.Close()
	}
	if _, err := hc.Get("http://127.0.0.1:1/unreachable"); err == nil {
		t.Fatal("a request to port 1 succeeded")
	}

	text := scrape(t, m)
	for _, want := range []string{
		`cibaproxy_http_requests_total{client="demo-poll",endpoint="/token",result="slow_down"} 2`,
		`cibaproxy_http_request_duration_seconds_count{endpoint="/token"} 2`,
		`cibaproxy_delivery_attempts_total{kind="ping",result="ok"} 1`,
		`cibaproxy_delivery_attempts_total{kind="webhook",result="error"} 1`,
		`cibaproxy_store_operation_duration_seconds_count{op="create"} 1`,
		`cibaproxy_store_operation_duration_seconds_count{op="get"} 2`,
		// Not found is an answer; only the closed store's failure counts.
		`cibaproxy_store_errors_total{op="get"} 1`,
		`cibaproxy_requests{mode="ping",state="pending"} 1`,
		`cibaproxy_requests{mode="poll",state="pending"} 0`,
		`cibaproxy_upstream_requests_total{kind="oidc",result="5xx"} 1`,
		`cibaproxy_upstream_requests_total{kind="oidc",result="error"} 1`,
		`cibaproxy_relay_upstream_polls_total{result="pending"} 1`,
		`cibaproxy_relay_upstream_polls_per_request_count 1`,
		`cibaproxy_relay_upstream_polls_per_request_sum 2`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func memoryWith(t *testing.T, rs ...*ciba.AuthRequest) ciba.Store {
	st := memory.New()
	for _, r := range rs {
		if err := st.CreateRequest(context.Background(), r.Clone()); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

// TestTheDashboardUsesOnlyExistingMetrics checks that every query of the
// Grafana dashboard names metrics this package exports, so a renamed metric
// cannot leave an empty panel behind.
func TestTheDashboardUsesOnlyExistingMetrics(t *testing.T) {
	m := New()
	m.ObserveRequest("/token", "c", "ok", time.Millisecond)
	m.ObserveDelivery("ping", nil)
	hc := &http.Client{Transport: m.Transport("oidc", nil)}
	_, _ = hc.Get("http://127.0.0.1:1/")
	st := m.Store(memory.New())
	_, _ = st.GetRequest(context.Background(), "x")
	_ = st.Close()
	_, _ = st.GetRequest(context.Background(), "x")
	m.WatchRequests(memory.New(), time.Now, time.Minute)
	m.ObserveRelayPoll("tokens", 3)
	text := scrape(t, m)
	known := map[string]bool{}
	for _, line := range strings.Split(text, "\n") {
		if name, _, ok := strings.Cut(line, "{"); ok && !strings.HasPrefix(line, "#") {
			known[name] = true
		} else if f := strings.Fields(line); len(f) == 2 && !strings.HasPrefix(line, "#") {
			known[f[0]] = true
		}
	}

	raw, err := os.ReadFile("../../packaging/grafana/cibaproxy.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	if len(dash.Panels) == 0 {
		t.Fatal("the dashboard has no panels")
	}
	name := regexp.MustCompile(`cibaproxy_[a-z_]+`)
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			names := name.FindAllString(tg.Expr, -1)
			if len(names) == 0 {
				t.Errorf("panel %q queries no cibaproxy metric: %s", p.Title, tg.Expr)
			}
			for _, n := range names {
				if !known[n] {
					t.Errorf("panel %q uses %s, which cibaproxy does not export", p.Title, n)
				}
			}
		}
	}
}

// TestStoreConformance: the timed store is a ciba.Store like any other,
// every operation of the contract included.
func TestStoreConformance(t *testing.T) {
	m := New()
	storetest.Run(t, func(*testing.T) ciba.Store { return m.Store(memory.New()) })
}
