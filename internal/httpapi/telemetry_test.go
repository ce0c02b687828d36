package httpapi

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestTelemetryHandler: the operators' listener serves the metrics,
// /healthz and /readyz and nothing a client uses; the main listener serves
// no metrics unless given them (metrics.listen: main).
func TestTelemetryHandler(t *testing.T) {
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("cibaproxy_requests_total 1\n")) })
	s := &Server{Ready: func(context.Context) error { return errors.New("store down") }}
	tel := s.TelemetryHandler(metrics)
	get := func(h http.Handler, method, path string) int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
		return rec.Code
	}
	for _, tt := range []struct {
		method, path string
		want         int
	}{
		{"GET", PathMetrics, 200},
		{"GET", PathHealth, 200},
		{"GET", PathReady, 503},
		{"POST", PathToken, 404},
		{"GET", PathDiscovery, 404},
		{"POST", PathCallback, 404},
	} {
		if got := get(tel, tt.method, tt.path); got != tt.want {
			t.Errorf("telemetry %s %s = %d, want %d", tt.method, tt.path, got, tt.want)
		}
	}
	main := (&Server{}).Handler()
	if got := get(main, "GET", PathMetrics); got != 404 {
		t.Errorf("main listener GET /metrics without Metrics = %d, want 404", got)
	}
	main = (&Server{Metrics: metrics}).Handler()
	if got := get(main, "GET", PathMetrics); got != 200 {
		t.Errorf("main listener GET /metrics with Metrics (metrics.listen: main) = %d, want 200", got)
	}
}
