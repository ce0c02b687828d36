package app

import (
	"bytes"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/config"
	"github.com/cibaproxy/cibaproxy/internal/limit"
	"github.com/cibaproxy/cibaproxy/internal/metrics"
	redisstore "github.com/cibaproxy/cibaproxy/internal/store/redis"
	"github.com/cibaproxy/cibaproxy/internal/store/redis/redistest"
)

// scrape returns the metrics m exposes.
func scrape(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, _ := io.ReadAll(rec.Body)
	return string(b)
}

// TestSharedLimitsFailOpen: with the Redis store the limits are kept in
// Redis; when Redis is gone a decision allows the request, logs a warning
// naming the limit, and counts cibaproxy_limit_errors_total. Without Redis
// they are in memory, and an off rate is no limiter.
func TestSharedLimitsFailOpen(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	rs, err := redisstore.Open(ctx, redisstore.Config{Addrs: []string{srv.Addr()}, KeyPrefix: "limits-test:", Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rs.Close() })
	m := metrics.New()
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	cfg := &config.Config{}
	newLimit := limitMaker(cfg, rs, m, log)

	if newLimit("requests_per_user", limit.Rate{}) != nil {
		t.Error("an off rate gave a limiter")
	}
	l := newLimit("requests_per_user", limit.Rate{Requests: 1, Per: time.Hour})
	now := time.Now()
	if ok, _, err := l.Allow(ctx, "alice", now); !ok || err != nil {
		t.Fatalf("first request: %v, %v", ok, err)
	}
	// Kept in Redis: another instance's limiter sees the token gone.
	other := limitMaker(cfg, rs, metrics.New(), log)("requests_per_user", limit.Rate{Requests: 1, Per: time.Hour})
	if ok, wait, err := other.Allow(ctx, "alice", now); ok || wait != time.Hour || err != nil {
		t.Fatalf("second request, through another limiter: %v, %v, %v; want refused for 1h", ok, wait, err)
	}

	srv.Kill()
	for range 3 {
		if ok, _, err := l.Allow(ctx, "alice", now); !ok || err != nil {
			t.Fatalf("with Redis down: %v, %v; want allowed (fail open)", ok, err)
		}
	}
	if got := scrape(t, m); !strings.Contains(got, `cibaproxy_limit_errors_total{limit="requests_per_user"} 3`) {
		t.Errorf("metrics lack cibaproxy_limit_errors_total{limit=\"requests_per_user\"} 3:\n%s", got)
	}
	// One warning, naming the limit, for the three failures in a row.
	if n := strings.Count(logs.String(), "level=WARN"); n != 1 || !strings.Contains(logs.String(), "limit=requests_per_user") {
		t.Errorf("%d warnings logged, want one naming the limit: %s", n, logs.String())
	}
	if strings.Contains(logs.String(), "alice") {
		t.Errorf("the log names the limited key: %s", logs.String())
	}

	mem := limitMaker(cfg, nil, m, log)("bc_authorize_per_client", limit.Rate{Requests: 1, Per: time.Hour})
	if _, ok := mem.(*limit.Limiter); !ok {
		t.Errorf("without Redis the limiter is a %T, want the in-memory *limit.Limiter", mem)
	}
}
