package e2e

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// TestDenied: a denial reaches each kind of client: the poll client and the
// ping client (after its ping, CIBA §10.2) hear access_denied at /token, the
// push client gets a push error payload (CIBA §12).
func TestDenied(t *testing.T) {
	t.Parallel()
	e := start(t)

	ping := e.mustAuthorize(testutil.DemoPing, "DenyPing")
	push := e.mustAuthorize(testutil.DemoPush, "DenyPush")
	e.answer(ping, "denied")
	e.answer(push, "denied")

	n, err := e.notify.WaitFor(ctx(t), ping.AuthReqID)
	if err != nil {
		t.Fatalf("no ping after the denial of a ping request: %v", err)
	}
	if n.Bearer != ping.NotificationToken {
		t.Errorf("ping bearer = %q, want %q", n.Bearer, ping.NotificationToken)
	}
	checkError(t, "ping client's /token after a denial", e.token(ping.Client, ping.AuthReqID), http.StatusBadRequest, "access_denied")

	n, err = e.notify.WaitFor(ctx(t), push.AuthReqID)
	if err != nil {
		t.Fatalf("no push error payload after the denial of a push request: %v", err)
	}
	if n.Bearer != push.NotificationToken {
		t.Errorf("push bearer = %q, want %q", n.Bearer, push.NotificationToken)
	}
	if n.Body["error"] != "access_denied" {
		t.Errorf("push error payload = %s, want error access_denied with auth_req_id (CIBA §12)", n.Raw)
	}
	if _, ok := n.Body["access_token"]; ok {
		t.Errorf("the push error payload of a denied request carries an access_token: %s", n.Raw)
	}
}

// expiring creates a request for bob that expires after 2 seconds.
func (e *env) expiring(c testutil.Client, prefix string) request {
	e.t.Helper()
	req := request{Client: c, Binding: tag(prefix)}
	f := url.Values{"scope": {"openid"}, "login_hint": {"bob"}, "binding_message": {req.Binding}, "requested_expiry": {"2"}}
	if c.ID != testutil.DemoPoll.ID {
		req.NotificationToken = notificationToken()
		f.Set("client_notification_token", req.NotificationToken)
	}
	r := e.authorize(c, f)
	if r.Status != http.StatusOK {
		e.t.Fatalf("/bc-authorize with requested_expiry=2: got %s", r)
	}
	if r.JSON["expires_in"] != 2.0 {
		e.t.Errorf("expires_in = %v, want 2 (the requested_expiry)", r.JSON["expires_in"])
	}
	req.AuthReqID = r.Str("auth_req_id")
	return req
}

// TestExpiredPoll: a poll of a request nobody answered, held past its
// expiry, answers expired_token (CIBA §11).
func TestExpiredPoll(t *testing.T) {
	t.Parallel()
	e := start(t)
	req := e.expiring(testutil.DemoPoll, "ExpPoll")
	// The poll is held until the request expires (long polling), or
	// answered authorization_pending; either way, poll until it is over.
	var r *testutil.Response
	for range 10 {
		r = e.token(req.Client, req.AuthReqID)
		if r.Str("error") != "authorization_pending" && r.Str("error") != "slow_down" {
			break
		}
	}
	checkError(t, "/token after the request expired", r, http.StatusBadRequest, "expired_token")
}

// TestExpiredPush: a push client whose request expires unanswered gets the
// expired_token push error payload (CIBA §12). The server runs nothing else,
// so no other activity wakes its dispatcher.
func TestExpiredPush(t *testing.T) {
	t.Parallel()
	e := start(t)
	req := e.expiring(testutil.DemoPush, "ExpPush")
	n, err := e.notify.WaitFor(ctx(t), req.AuthReqID)
	if err != nil {
		// The request expired 2 s after it was made; its push is due then.
		t.Fatalf("no push error payload within %v of a push request's 2-second expiry: %v", waitTimeout, err)
	}
	if n.Body["error"] != "expired_token" || n.Bearer != req.NotificationToken {
		t.Errorf("push after expiry: bearer %q body %s, want bearer %q and error expired_token (CIBA §12)", n.Bearer, n.Raw, req.NotificationToken)
	}
}
