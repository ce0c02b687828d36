package e2e

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// checkMessage checks the webhook message of req.
func (e *env) checkMessage(m testutil.Message, req request) {
	e.t.Helper()
	t := e.t
	if m.ClientID != req.Client.ID {
		t.Errorf("webhook client_id = %q, want %q", m.ClientID, req.Client.ID)
	}
	if m.LoginHint != "alice" || m.Subject != "alice" {
		t.Errorf("webhook login_hint, subject = %q, %q, want alice, alice", m.LoginHint, m.Subject)
	}
	if !slices.Contains(strings.Fields(m.Scope), "openid") || !slices.Contains(strings.Fields(m.Scope), "email") {
		t.Errorf("webhook scope = %q, want openid email", m.Scope)
	}
	if !m.ExpiresAt.After(time.Now()) {
		t.Errorf("webhook expires_at = %v, want a time in the future", m.ExpiresAt)
	}
	if want := e.url("/ciba/callback"); m.CallbackURL != want {
		t.Errorf("webhook callback_url = %q, want %q", m.CallbackURL, want)
	}
	if strings.Contains(string(m.Raw), req.AuthReqID) {
		t.Errorf("the webhook message carries the auth_req_id, which must stay between client and server: %s", m.Raw)
	}
}

// TestPollMode: bc-authorize → webhook message → approval at the callback →
// tokens at /token exactly once.
func TestPollMode(t *testing.T) {
	t.Parallel()
	e := start(t)
	req := e.mustAuthorize(testutil.DemoPoll, "Poll")
	m := e.answer(req, "approved")
	e.checkMessage(m, req)

	r := checkTokens(t, "first /token after approval", e.token(req.Client, req.AuthReqID))
	tok := e.verifyIDToken(r.Str("id_token"), req.Client.ID)
	if tok.str("sub") != "alice" {
		t.Errorf("ID token sub = %q, want alice", tok.str("sub"))
	}
	if tok.str("email") == "" {
		t.Errorf("ID token has no email claim although scope had email: %v", tok.Claims)
	}
	if _, ok := tok.Claims["auth_time"].(float64); !ok {
		t.Errorf("ID token has no auth_time: %v", tok.Claims)
	}
	checkHashes(t, tok, r.Str("access_token"), r.Str("refresh_token"))

	checkError(t, "second /token for a redeemed auth_req_id", e.token(req.Client, req.AuthReqID), http.StatusBadRequest, "invalid_grant")

	// The ID token works as id_token_hint for the next request (CIBA §7.1).
	hint := e.authorize(req.Client, url.Values{"scope": {"openid"}, "id_token_hint": {r.Str("id_token")}, "binding_message": {tag("Hint")}})
	if hint.Status != http.StatusOK {
		t.Errorf("/bc-authorize with the ID token as id_token_hint: got %s, want 200", hint)
	}
	// ... but not for another client (it is not the audience).
	other := e.authorize(testutil.DemoPing, url.Values{"scope": {"openid"}, "id_token_hint": {r.Str("id_token")}, "client_notification_token": {notificationToken()}})
	if other.Status == http.StatusOK {
		t.Errorf("/bc-authorize by demo-ping with demo-poll's ID token as id_token_hint: got %s, want an error", other)
	}
}

// TestConcurrentRedeem: many simultaneous polls after the approval get the
// tokens exactly once; every other one hears invalid_grant.
func TestConcurrentRedeem(t *testing.T) {
	t.Parallel()
	e := start(t)
	req := e.mustAuthorize(testutil.DemoPoll, "Race")
	e.answer(req, "approved")
	const n = 12
	answers := make(chan *testutil.Response, n)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers <- e.tokenNoFatal(req.Client, req.AuthReqID)
		}()
	}
	wg.Wait()
	close(answers)
	ok := 0
	for r := range answers {
		switch {
		case r.Status == http.StatusOK && r.Str("access_token") != "":
			ok++
		case r.Status == http.StatusBadRequest && r.Str("error") == "invalid_grant":
		default:
			t.Errorf("concurrent /token: got %s, want 200 once and 400 invalid_grant otherwise", r)
		}
	}
	if ok != 1 {
		t.Errorf("%d of %d concurrent polls got tokens, want exactly 1", ok, n)
	}
}

// TestPingMode: the notification endpoint receives exactly one ping with
// the client_notification_token as bearer; then /token gives the tokens.
func TestPingMode(t *testing.T) {
	t.Parallel()
	e := start(t)
	req := e.mustAuthorize(testutil.DemoPing, "Ping")
	e.message(req)
	if got := e.notify.For(req.AuthReqID); len(got) != 0 {
		t.Fatalf("a ping arrived before the user answered: %s", got[0].Raw)
	}
	m := e.answer(req, "approved")
	e.checkMessage(m, req)

	n, err := e.notify.WaitFor(ctx(t), req.AuthReqID)
	if err != nil {
		t.Fatal(err)
	}
	if n.Bearer != req.NotificationToken {
		t.Errorf("ping bearer = %q, want the client_notification_token %q", n.Bearer, req.NotificationToken)
	}
	if !strings.HasPrefix(n.ContentType, "application/json") {
		t.Errorf("ping Content-Type = %q, want application/json", n.ContentType)
	}
	if len(n.Body) != 1 {
		t.Errorf("ping body = %s, want only auth_req_id (CIBA §10.2)", n.Raw)
	}

	r := checkTokens(t, "/token after the ping", e.token(req.Client, req.AuthReqID))
	tok := e.verifyIDToken(r.Str("id_token"), req.Client.ID)
	if tok.str("sub") != "alice" {
		t.Errorf("ID token sub = %q, want alice", tok.str("sub"))
	}
	checkHashes(t, tok, r.Str("access_token"), r.Str("refresh_token"))
	checkError(t, "second /token", e.token(req.Client, req.AuthReqID), http.StatusBadRequest, "invalid_grant")

	if got := e.notify.For(req.AuthReqID); len(got) != 1 {
		t.Errorf("the notification endpoint got %d pings for one request, want exactly 1", len(got))
	}
}

// TestPushMode: the notification endpoint receives the token response with
// auth_req_id; the ID token is signed by a /jwks key and carries the CIBA
// push claims (CIBA §10.3.1).
func TestPushMode(t *testing.T) {
	t.Parallel()
	e := start(t)
	req := e.mustAuthorize(testutil.DemoPush, "Push")
	m := e.answer(req, "approved")
	e.checkMessage(m, req)

	n, err := e.notify.WaitFor(ctx(t), req.AuthReqID)
	if err != nil {
		t.Fatal(err)
	}
	if n.Bearer != req.NotificationToken {
		t.Errorf("push bearer = %q, want the client_notification_token %q", n.Bearer, req.NotificationToken)
	}
	if !strings.HasPrefix(n.ContentType, "application/json") {
		t.Errorf("push Content-Type = %q, want application/json", n.ContentType)
	}
	str := func(k string) string { s, _ := n.Body[k].(string); return s }
	for _, k := range []string{"access_token", "token_type", "id_token"} {
		if str(k) == "" {
			t.Errorf("push body has no %s: %s", k, n.Raw)
		}
	}
	if _, ok := n.Body["expires_in"].(float64); !ok {
		t.Errorf("push body has no expires_in: %s", n.Raw)
	}
	if str("id_token") == "" {
		t.FailNow()
	}
	tok := e.verifyIDToken(str("id_token"), req.Client.ID)
	if tok.str("sub") != "alice" {
		t.Errorf("ID token sub = %q, want alice", tok.str("sub"))
	}
	if got := tok.str(claimAuthReqID); got != req.AuthReqID {
		t.Errorf("ID token %s = %q, want the auth_req_id %q (CIBA §10.3.1)", claimAuthReqID, got, req.AuthReqID)
	}
	if tok.str("at_hash") == "" {
		t.Errorf("push ID token has no at_hash (CIBA §10.3.1)")
	}
	if str("refresh_token") != "" && tok.str(claimRTHash) == "" {
		t.Errorf("push ID token has no %s although a refresh token was pushed (CIBA §10.3.1)", claimRTHash)
	}
	checkHashes(t, tok, str("access_token"), str("refresh_token"))

	// CIBA §11: a push client does not poll; its token request is refused.
	checkError(t, "/token by a push client", e.token(req.Client, req.AuthReqID), http.StatusBadRequest, "unauthorized_client")
	if got := e.notify.For(req.AuthReqID); len(got) != 1 {
		t.Errorf("the notification endpoint got %d pushes for one request, want exactly 1", len(got))
	}
}

// TestLongPoll: a /token poll sent before the approval is held and answered
// with the tokens once the callback approves.
func TestLongPoll(t *testing.T) {
	t.Parallel()
	e := start(t)
	req := e.mustAuthorize(testutil.DemoPoll, "Long")
	m := e.message(req)

	answered := make(chan *testutil.Response, 1)
	failed := make(chan error, 1)
	go func() {
		cx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		r, err := testutil.PostForm(cx, e.url("/token"), req.Client, url.Values{
			"grant_type":  {testutil.GrantCIBA},
			"auth_req_id": {req.AuthReqID},
		})
		if err != nil {
			failed <- err
			return
		}
		answered <- r
	}()

	// Give the poll a moment to reach the server. Should it be answered
	// meanwhile it must not be authorization_pending: the request is pending
	// and long polling is on, so it is held.
	select {
	case r := <-answered:
		t.Fatalf("the poll was answered before the approval with %s; with long polling on it should be held", r)
	case err := <-failed:
		t.Fatalf("POST /token: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	r, err := testutil.Callback(ctx(t), m, "approved")
	if err != nil || r.Status != http.StatusNoContent {
		t.Fatalf("callback approve: %v %v", r, err)
	}
	select {
	case r := <-answered:
		checkTokens(t, "held /token poll", r)
	case err := <-failed:
		t.Fatalf("POST /token: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("the held poll was not answered")
	}
}

// TestRefresh: the refresh token of a poll flow gets new tokens; it is then
// used up (rotation), and the new one works.
func TestRefresh(t *testing.T) {
	t.Parallel()
	e := start(t)
	client := testutil.DemoPoll
	client.Post = true // client_secret_post here; Basic elsewhere
	req := e.mustAuthorize(client, "Refresh")
	e.answer(req, "approved")
	first := checkTokens(t, "/token after approval", e.token(client, req.AuthReqID))
	rt := first.Str("refresh_token")
	if rt == "" {
		t.Fatalf("the poll flow's token response has no refresh_token: %s", first.Body)
	}

	refresh := func(c testutil.Client, token string) *testutil.Response {
		t.Helper()
		r, err := testutil.PostForm(ctx(t), e.url("/token"), c, url.Values{
			"grant_type":    {"refresh_token"},
			"refresh_token": {token},
		})
		if err != nil {
			t.Fatalf("POST /token refresh_token: %v", err)
		}
		return r
	}
	second := refresh(client, rt)
	if second.Status != http.StatusOK || second.Str("access_token") == "" {
		t.Fatalf("refresh_token grant: got %s, want 200 with an access_token", second)
	}
	checkNoStore(t, "refresh_token grant", second)
	if second.Str("access_token") == first.Str("access_token") {
		t.Errorf("the refresh gave the same access token again")
	}
	rt2 := second.Str("refresh_token")
	if rt2 == "" || rt2 == rt {
		t.Errorf("the refresh did not rotate the refresh token: got %q", rt2)
	}
	if idt := second.Str("id_token"); idt != "" {
		tok := e.verifyIDToken(idt, client.ID)
		if tok.str("sub") != "alice" {
			t.Errorf("refreshed ID token sub = %q, want alice", tok.str("sub"))
		}
		checkHashes(t, tok, second.Str("access_token"), rt2)
	}

	// The rotated token works (used before the replay below, as a server
	// may revoke the whole family when it sees a used token again).
	if rt2 != "" {
		third := refresh(client, rt2)
		if third.Status != http.StatusOK || third.Str("access_token") == "" {
			t.Errorf("refresh with the rotated refresh token: got %s, want 200", third)
		}
	}
	checkError(t, "refresh with the used refresh token", refresh(client, rt), http.StatusBadRequest, "invalid_grant")
}
