package httpapi

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// refusal is an error a limit answers with, like clientauth.LimitError.
type refusal struct {
	err  *ciba.Error
	wait time.Duration
}

func (r refusal) Error() string             { return r.err.Error() }
func (r refusal) Unwrap() error             { return r.err }
func (r refusal) RetryAfter() time.Duration { return r.wait }

// TestWriteErrorRetryAfter: an error that says how long to wait is answered
// with Retry-After in whole seconds, rounded up; others carry none.
func TestWriteErrorRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{refusal{&ciba.Error{Code: ciba.CodeSlowDown, Status: http.StatusTooManyRequests, Description: "too many"}, 2500 * time.Millisecond}, "3"},
		{refusal{&ciba.Error{Code: ciba.CodeTemporarilyUnavailable, Description: "busy"}, 0}, "1"},
		{ciba.Errorf(ciba.CodeInvalidClient, "no"), ""},
		{errors.New("plain"), ""},
	} {
		w := httptest.NewRecorder()
		writeError(w, tc.err)
		if got := w.Header().Get("Retry-After"); got != tc.want {
			t.Errorf("%v: Retry-After %q, want %q", tc.err, got, tc.want)
		}
	}
}
