package httpapi

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestRecovererLogsTheRouteNotThePath: a handler that panics is answered
// server_error, and the log line names the route's pattern, never the path,
// whose last segment may be a secret (an approval id, an enrolment token).
func TestRecovererLogsTheRouteNotThePath(t *testing.T) {
	var logs bytes.Buffer
	s := &Server{Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /passkeys/enroll/{token}", func(http.ResponseWriter, *http.Request) { panic("boom") })
	const secret = "Zm9vYmFyYmF6cXV4c2VjcmV0dG9rZW4"
	rec := httptest.NewRecorder()
	s.recoverer(mux).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/passkeys/enroll/"+secret, nil))
	if rec.Code != http.StatusInternalServerError || !strings.Contains(rec.Body.String(), "server_error") {
		t.Fatalf("answer %d %s, want 500 server_error", rec.Code, rec.Body)
	}
	if strings.Contains(logs.String(), secret) {
		t.Errorf("the log holds the path's secret: %s", logs.String())
	}
	if !strings.Contains(logs.String(), "route=/passkeys/enroll/{token}") {
		t.Errorf("the log does not name the route: %s", logs.String())
	}
}
