package abuse

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/test/idp"
	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// Push bombing (SECURITY.md): limits.requests_per_user at its default, 10
// requests per 10 minutes for one user from all clients together, keyed by
// the verified subject or, before sign-in, by the normalised hint. One
// token comes back per minute.
const (
	peruserLimit  = 10
	peruserRefill = time.Minute
	// peruserBurst is the size of each parallel burst.
	peruserBurst = 120
)

// peruserVariants are ways of writing the e-mail address of one user that
// a client might try for fresh buckets: case, white space, a zero-width
// space.
func peruserVariants(email string) []string {
	return []string{
		email, strings.ToUpper(email), " " + email, email + "\t", "  " + strings.ToUpper(email[:1]) + email[1:] + " ",
		email[:2] + "\u200b" + email[2:], "\u00a0" + email,
	}
}

// peruserTally counts the answers of a burst.
type peruserTally struct {
	mu     sync.Mutex
	ok     int
	denied int // access_denied, HTTP 403
	other  map[string]int
}

func (c *peruserTally) add(r *testutil.Response) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case r.Status == http.StatusOK:
		c.ok++
	case r.Status == http.StatusForbidden && r.Str("error") == "access_denied":
		c.denied++
	default:
		if c.other == nil {
			c.other = map[string]int{}
		}
		c.other[fmt.Sprintf("%d %s", r.Status, r.Str("error"))]++
	}
}

// peruserBurstOf sends n requests of client c at once, the i-th with
// form(i), and tallies the answers.
func peruserBurstOf(t *testing.T, e *env, c testutil.Client, n int, form func(i int) url.Values) *peruserTally {
	t.Helper()
	var tally peruserTally
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			r, err := testutil.PostForm(burstCtx(t), e.url("/bc-authorize"), c, form(i))
			if err != nil {
				t.Errorf("bc-authorize %d: %v", i, err)
				return
			}
			tally.add(r)
		}()
	}
	close(start)
	wg.Wait()
	return &tally
}

// peruserAllowed is how many requests for one user may have been accepted
// since since, when used had already been before it: the bucket, plus the
// tokens that came back meanwhile.
func peruserAllowed(used int, since time.Time) int {
	return peruserLimit - used + int(time.Since(since)/peruserRefill)
}

// TestPerUserLimitOIDC runs examples/oidc.yaml at its defaults. Before the
// user signs in, a login_hint names no verified subject: 50 different users
// must each get their requests (not one bucket for all), and one user
// flooded, in a parallel burst with case and white-space variants of the
// hint, gets no more than the limit.
func TestPerUserLimitOIDC(t *testing.T) {
	t.Parallel()
	const users = 50
	e := startOIDC(t, users)
	form := func(hint string) url.Values {
		return url.Values{"scope": {"openid"}, "login_hint": {hint}, "user_code": {"4711"}}
	}
	// Before user7's first request: its tokens come back from then on.
	since := time.Now()
	for i := range users {
		if r := e.authorize(posTerminal, form(fmt.Sprintf("user%d@example.com", i))); r.Status != http.StatusOK {
			t.Fatalf("user%d, the first request of that user: %s", i, r)
		}
	}
	// Every user has 9 left; user7 is flooded with variants of its hint.
	hints := peruserVariants("user7@example.com")
	tally := peruserBurstOf(t, e.env, posTerminal, peruserBurst, func(i int) url.Values { return form(hints[i%len(hints)]) })
	allowed := peruserAllowed(1, since)
	if tally.ok < peruserLimit-1 || tally.ok > allowed || tally.denied != peruserBurst-tally.ok || len(tally.other) > 0 {
		t.Errorf("a burst of %d for one user: %d accepted (want %d to %d), %d access_denied, others %v",
			peruserBurst, tally.ok, peruserLimit-1, allowed, tally.denied, tally.other)
	}
	// The other users still get theirs.
	for _, i := range []int{0, 8, 49} {
		if r := e.authorize(posTerminal, form(fmt.Sprintf("User%d@Example.com", i))); r.Status != http.StatusOK {
			t.Errorf("user%d after user7 was flooded: %s", i, r)
		}
	}
	// The refusal says why, and when to come back.
	r := e.authorize(posTerminal, form("USER7@example.com "))
	if r.Status != http.StatusForbidden || !strings.Contains(r.Str("error_description"), "too many authentication requests for this user") {
		t.Errorf("user7 after the flood: %s, want access_denied", r)
	}
}

// TestPerUserLimitQuickstart runs examples/quickstart.yaml (the local
// upstream) at its defaults: the limit is alice's subject's, whichever of
// her names the hint uses, in a parallel burst.
func TestPerUserLimitQuickstart(t *testing.T) {
	t.Parallel()
	e := startQuickstart(t)
	// alice is known by username and by e-mail address (any case).
	hints := []string{"alice", "alice@example.com", "Alice@Example.COM"}
	since := time.Now()
	tally := peruserBurstOf(t, e, demoPoll, peruserBurst, func(i int) url.Values {
		return url.Values{"scope": {"openid"}, "login_hint": {hints[i%len(hints)]}}
	})
	if allowed := peruserAllowed(0, since); tally.ok < peruserLimit || tally.ok > allowed || tally.denied != peruserBurst-tally.ok || len(tally.other) > 0 {
		t.Errorf("a burst of %d for alice: %d accepted (want %d to %d), %d access_denied, others %v",
			peruserBurst, tally.ok, peruserLimit, allowed, tally.denied, tally.other)
	}
	e.mustAuthorize(demoPoll, url.Values{"scope": {"openid"}, "login_hint": {"bob"}})
}

// TestPerUserLimitRedisPair runs two instances of examples/redis.yaml on
// one Redis: a burst spread over both gets the limit once, not twice.
func TestPerUserLimitRedisPair(t *testing.T) {
	t.Parallel()
	p := startRedisPair(t)
	since := time.Now()
	var tallies [2]*peruserTally
	var wg sync.WaitGroup
	for i, e := range p {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tallies[i] = peruserBurstOf(t, e, demoPoll, peruserBurst/2, func(int) url.Values {
				return url.Values{"scope": {"openid"}, "login_hint": {"alice"}}
			})
		}()
	}
	wg.Wait()
	ok := tallies[0].ok + tallies[1].ok
	if allowed := peruserAllowed(0, since); ok < peruserLimit || ok > allowed {
		t.Errorf("a burst of %d for alice over two instances: %d accepted (%d and %d), want %d to %d",
			peruserBurst, ok, tallies[0].ok, tallies[1].ok, peruserLimit, allowed)
	}
}

// TestPerUserLimitRelay runs examples/relay.yaml, unchanged, in front of a
// real CIBA provider (node-oidc-provider, which matches e-mail addresses
// in any case): each relayed request reaches the user through the
// provider, so case variants of the hint must not get fresh buckets.
func TestPerUserLimitRelay(t *testing.T) {
	t.Parallel()
	teller := testutil.Client{ID: "teller", Secret: "change-me-teller"}
	e := &env{t: t, hook: testutil.NewWebhook(t), notify: testutil.NewNotifier(t)}
	f := testutil.StartIdPAndProxy(t, testutil.FederationOptions{
		IdP: func(*testutil.Federation) idp.Config {
			return idp.Config{
				Clients:  []idp.Client{{ID: teller.ID, Secret: teller.Secret, GrantTypes: []string{idp.GrantCIBA}, BackchannelTokenDeliveryMode: "poll"}},
				Accounts: []idp.Account{{ID: "alice", Email: "alice@example.com", EmailVerified: true}, {ID: "bob", Email: "bob@example.com", EmailVerified: true}},
			}
		},
		Env: func(f *testutil.Federation) []string {
			return []string{"IDP_ISSUER=" + f.IdP.Issuer(), "KIOSK_NOTIFY_URL=" + e.notify.URL}
		},
		Options: testutil.Options{
			Binary: binary, Config: example("relay.yaml"), DefaultLimits: true,
			WebhookURL: e.hook.URL, NotifyURL: e.notify.URL,
		},
	})
	e.srv = f.Server
	op := f.IdP
	hints := []string{"alice@example.com", "ALICE@example.com", "Alice@Example.Com", "alice@EXAMPLE.com"}
	since := time.Now()
	tally := peruserBurstOf(t, e, teller, peruserBurst, func(i int) url.Values {
		return url.Values{"scope": {"openid"}, "login_hint": {hints[i%len(hints)]}}
	})
	if allowed := peruserAllowed(0, since); tally.ok < peruserLimit || tally.ok > allowed || tally.denied != peruserBurst-tally.ok {
		t.Errorf("a burst of %d relayed for alice: %d accepted (want %d to %d), %d access_denied, others %v",
			peruserBurst, tally.ok, peruserLimit, allowed, tally.denied, tally.other)
	}
	pending, err := op.Pending(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if allowed := peruserAllowed(0, since); len(pending) > allowed {
		t.Errorf("the provider holds %d requests for alice, want at most %d", len(pending), allowed)
	}
	e.mustAuthorize(teller, url.Values{"scope": {"openid"}, "login_hint": {"bob@example.com"}})
}

// peruserIDToken has the test IdP issue an ID token of account to c, by
// its own CIBA grant approved at once.
func peruserIDToken(t *testing.T, op *idp.IdP, c testutil.Client, account string) string {
	t.Helper()
	r, err := testutil.PostForm(ctx(t), op.Issuer()+"/backchannel", c, url.Values{"scope": {"openid"}, "login_hint": {account}})
	if err != nil || r.Status != http.StatusOK {
		t.Fatalf("IdP backchannel request: %v %v", r, err)
	}
	id := r.Str("auth_req_id")
	if _, err := op.ApproveCIBA(ctx(t), id); err != nil {
		t.Fatalf("approve at the IdP: %v", err)
	}
	r, err = testutil.PostForm(ctx(t), op.Issuer()+"/token", c, url.Values{"grant_type": {idp.GrantCIBA}, "auth_req_id": {id}})
	if err != nil || r.Status != http.StatusOK || r.Str("id_token") == "" {
		t.Fatalf("IdP token request: %v %v", r, err)
	}
	return r.Str("id_token")
}

// TestPerUserLimitOIDCIDTokenHint runs examples/oidc.yaml at its defaults
// with id_token_hint requests: the hint is verified, so the limit is the
// subject's.
func TestPerUserLimitOIDCIDTokenHint(t *testing.T) {
	t.Parallel()
	addr, err := testutil.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	op := idp.Start(t, idp.Config{
		Clients: []idp.Client{{ID: posTerminal.ID, Secret: posTerminal.Secret, RedirectURIs: []string{"http://" + addr + "/approve/callback"},
			GrantTypes: []string{idp.GrantAuthorizationCode, idp.GrantCIBA}}},
		Accounts: []idp.Account{{ID: "alice", Email: "alice@example.com", EmailVerified: true, PreferredUsername: "alice"}},
	})
	// Two grants; within one second the IdP may sign the same claims into
	// the same token (internal/ciba TestUserLimitKeys has distinct tokens
	// of one subject).
	tokens := []string{peruserIDToken(t, op, posTerminal, "alice"), peruserIDToken(t, op, posTerminal, "alice")}
	e := &env{t: t, hook: testutil.NewWebhook(t), notify: testutil.NewNotifier(t)}
	e.srv = testutil.Start(t, testutil.Options{
		Binary: binary, Config: example("oidc.yaml"), Addr: addr, DefaultLimits: true,
		WebhookURL: e.hook.URL, NotifyURL: e.notify.URL,
		Env: []string{"OIDC_ISSUER=" + op.Issuer(), "CALLCENTER_NOTIFY_URL=" + e.notify.URL},
	})
	since := time.Now()
	tally := peruserBurstOf(t, e, posTerminal, peruserBurst, func(i int) url.Values {
		return url.Values{"scope": {"openid"}, "id_token_hint": {tokens[i%len(tokens)]}, "user_code": {"4711"}}
	})
	if allowed := peruserAllowed(0, since); tally.ok < peruserLimit || tally.ok > allowed || tally.denied != peruserBurst-tally.ok || len(tally.other) > 0 {
		t.Errorf("a burst of %d with ID tokens of alice: %d accepted (want %d to %d), %d access_denied, others %v",
			peruserBurst, tally.ok, peruserLimit, allowed, tally.denied, tally.other)
	}
}
