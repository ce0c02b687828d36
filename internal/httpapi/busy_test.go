package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cibaproxy/cibaproxy/internal/limit"
)

// busyPasswords answers like fakeUpstream, but while busy is set it
// checks nothing and reports limit.ErrBusy, as the local upstream does
// when no bcrypt slot came free in time.
type busyPasswords struct{ busy atomic.Bool }

func (p *busyPasswords) CheckPassword(ctx context.Context, user, pw string) (string, bool, error) {
	if p.busy.Load() {
		return "", false, fmt.Errorf("local: password check: %w", limit.ErrBusy)
	}
	return fakeUpstream{}.CheckPassword(ctx, user, pw)
}

// TestDevicePageBusyPassword: on the device page, a password that could
// not be checked is answered a 503 "busy" page with Retry-After, and the
// request is left as it was: the same password then approves it.
func TestDevicePageBusyPassword(t *testing.T) {
	e := newDeviceEnv(t, false)
	pw := &busyPasswords{}
	e.approval.Passwords = pw
	_, uc := e.start(t, "tv", url.Values{"scope": {"openid"}})
	c := browser()
	status, body, csrf := e.enter(t, c, uc)
	if status != http.StatusOK || csrf == "" {
		t.Fatalf("continue: %d\n%s", status, body)
	}
	approve := func() (int, string, *http.Response) {
		return e.page(t, c, http.MethodPost, "", url.Values{"csrf": {csrf}, "user_code": {uc}, "action": {"approve"}, "username": {"alice"}, "password": {"alice-password"}})
	}
	pw.busy.Store(true)
	if s, b, resp := approve(); s != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" || !strings.Contains(b, "busy") {
		t.Fatalf("busy check: %d (Retry-After %q)\n%s", s, resp.Header.Get("Retry-After"), b)
	}
	pw.busy.Store(false)
	if s, b, _ := approve(); s != http.StatusOK || !strings.Contains(b, "approved") {
		t.Fatalf("the same password after the busy answer: %d\n%s", s, b)
	}
}
