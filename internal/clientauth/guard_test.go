package clientauth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/limit"
	"github.com/cibaproxy/cibaproxy/internal/limit/limittest"
)

// countingLimit is a limit.Keyed that counts the calls made to it.
type countingLimit struct {
	limit.Keyed
	allows, refunds atomic.Int32
}

func (c *countingLimit) Allow(ctx context.Context, key string, now time.Time) (bool, time.Duration, error) {
	c.allows.Add(1)
	return c.Keyed.Allow(ctx, key, now)
}

func (c *countingLimit) Refund(ctx context.Context, key string, now time.Time) error {
	c.refunds.Add(1)
	return c.Keyed.Refund(ctx, key, now)
}

// guarded returns testRegistry with a Guard limiting failures to n per
// hour per address, and the limit to count calls.
func guarded(t *testing.T, n int, o GuardOptions) (*Registry, *countingLimit) {
	t.Helper()
	reg := testRegistry(t)
	lim := &countingLimit{Keyed: limit.New(limit.Rate{Requests: n, Per: time.Hour}, 0)}
	o.Failures = lim
	reg.Guard = NewGuard(o)
	return reg, lim
}

// basicFrom authenticates with Basic credentials from address addr.
func basicFrom(t *testing.T, reg *Registry, addr, id, secret string) (*Registration, error) {
	req := httptest.NewRequest(http.MethodPost, tokenEndpoint, nil)
	req.RemoteAddr = net.JoinHostPort(addr, "40000")
	req.Header.Set("Authorization", basicHeader(id, secret))
	return reg.Authenticate(t.Context(), req, url.Values{}, tokenEndpoint)
}

// outcome classifies an Authenticate error: "ok", "invalid_client" (401),
// "limited" (429 with a Retry-After), "busy" (503 with a Retry-After).
func outcome(t *testing.T, err error) string {
	t.Helper()
	var le *LimitError
	switch e := ciba.AsError(err); {
	case err == nil:
		return "ok"
	case errors.As(err, &le) && e.HTTPStatus() == http.StatusTooManyRequests && e.Code == ciba.CodeSlowDown && le.RetryAfter() >= time.Second:
		return "limited"
	case errors.As(err, &le) && e.HTTPStatus() == http.StatusServiceUnavailable && e.Code == ciba.CodeTemporarilyUnavailable && le.RetryAfter() >= time.Second:
		return "busy"
	case e.Code == ciba.CodeInvalidClient && e.HTTPStatus() == http.StatusUnauthorized:
		return "invalid_client"
	default:
		t.Fatalf("unexpected answer %v (%s, HTTP %d)", err, e.Code, e.HTTPStatus())
		return ""
	}
}

// TestGuardParallelWrongSecretsAreAllCounted: 100 wrong secrets at once
// from one address cost 100 failures: 20 are checked (20 bcrypt checks,
// 20 invalid_client), the other 80 are refused unchecked. The client_id
// attacked is then refused from the address even with the right secret;
// another address is not.
func TestGuardParallelWrongSecretsAreAllCounted(t *testing.T) {
	for _, id := range []string{"hashed", "nobody", "basic"} {
		t.Run(id, func(t *testing.T) {
			reg, _ := guarded(t, 20, GuardOptions{HashWait: time.Minute})
			var mu sync.Mutex
			got := map[string]int{}
			var wg sync.WaitGroup
			for range 100 {
				wg.Go(func() {
					_, err := basicFrom(t, reg, "192.0.2.7", id, "wrong")
					o := outcome(t, err)
					mu.Lock()
					got[o]++
					mu.Unlock()
				})
			}
			wg.Wait()
			if got["invalid_client"] != 20 || got["limited"] != 80 {
				t.Fatalf("100 parallel wrong secrets: %v, want 20 invalid_client and 80 limited", got)
			}
			// A registry with a hashed client checks every failure with
			// bcrypt, the checked ones only.
			if h := reg.Guard.Hashes(); h != 20 {
				t.Fatalf("%d bcrypt checks for 20 checked failures", h)
			}
			// The client_id attacked is refused from the address even with
			// its right secret: no guessing around the limit.
			if right, ok := map[string]string{"hashed": hashedSecret, "basic": plainSecret}[id]; ok {
				if _, err := basicFrom(t, reg, "192.0.2.7", id, right); outcome(t, err) != "limited" {
					t.Fatalf("the right secret of %s from the refused address: %v, want limited until a token is back", id, err)
				}
			}
			// Another client behind the same address is still served when
			// its secret needs no bcrypt check; one that needs one waits
			// for the address's next token.
			if _, err := basicFrom(t, reg, "192.0.2.7", "svc:reports", oddSecret); err != nil {
				t.Fatalf("another client on the refused address: %v", err)
			}
			if id != "hashed" {
				if _, err := basicFrom(t, reg, "192.0.2.7", "hashed", hashedSecret); outcome(t, err) != "limited" {
					t.Fatalf("an unverified hashed secret on the drained address: %v, want limited", err)
				}
			}
			if _, err := basicFrom(t, reg, "192.0.2.8", "basic", plainSecret); err != nil {
				t.Fatalf("another address: %v", err)
			}
			if _, err := basicFrom(t, reg, "192.0.2.8", "hashed", hashedSecret); err != nil {
				t.Fatalf("another address, hashed secret: %v", err)
			}
		})
	}
}

// TestGuardUnknownClientCostsAWrongSecret: with a hashed client
// registered, an unknown client, a wrong hashed secret, a wrong plain
// secret and a client without a secret each cost one bcrypt check and one
// failure, and get the same answer; without one, none costs a bcrypt
// check.
func TestGuardUnknownClientCostsAWrongSecret(t *testing.T) {
	reg, lim := guarded(t, 1000, GuardOptions{})
	answer := func(id string) string {
		beforeH, beforeA := reg.Guard.Hashes(), lim.allows.Load()
		_, err := basicFrom(t, reg, "192.0.2.9", id, "wrong")
		e := ciba.AsError(err)
		if h := reg.Guard.Hashes() - beforeH; h != 1 {
			t.Errorf("%s: %d bcrypt checks for a failure, want 1", id, h)
		}
		if a := lim.allows.Load() - beforeA; a != 1 {
			t.Errorf("%s: %d failure tokens taken, want 1", id, a)
		}
		return string(e.Code) + "|" + e.Description + "|" + WWWAuthenticate(err)
	}
	want := answer("hashed")
	for _, id := range []string{"nobody", "basic", "jwt"} {
		if got := answer(id); got != want {
			t.Errorf("%s answered %q, a wrong hashed secret %q", id, got, want)
		}
	}
	if reg.hashDecoy == nil {
		t.Fatal("no decoy")
	}
	if c, _ := bcrypt.Cost(reg.hashDecoy.hash); c != bcrypt.MinCost {
		t.Fatalf("decoy cost %d, want the registered hash's %d", c, bcrypt.MinCost)
	}

	t.Run("no hashed client: no bcrypt at all", func(t *testing.T) {
		plain, err := NewRegistry(newReg(t, testOpts{Client: ciba.Client{ID: "basic"}, Secret: plainSecret}))
		if err != nil {
			t.Fatal(err)
		}
		plain.Guard = NewGuard(GuardOptions{Failures: limit.New(limit.Rate{Requests: 100, Per: time.Hour}, 0)})
		for _, id := range []string{"basic", "nobody"} {
			if _, err := basicFrom(t, plain, "192.0.2.9", id, "wrong"); outcome(t, err) != "invalid_client" {
				t.Fatalf("%s: %v", id, err)
			}
		}
		if plain.hashDecoy != nil || plain.Guard.Hashes() != 0 {
			t.Fatalf("bcrypt ran %d times without a hashed client", plain.Guard.Hashes())
		}
	})
}

// TestGuardSuccessesCostNothing: a success does not consume the failure
// budget of its address, whatever its method, nor refill it. An address
// with a budget of 5 failures that mixes 100 successes (a hashed secret
// whose first check runs bcrypt and reserves a token, then verified ones,
// and a plain secret) with failures still has exactly 5 failures before it
// is refused; and the successes never reach the limit's store past that
// first reservation (the poll path pays no round trip for it).
func TestGuardSuccessesCostNothing(t *testing.T) {
	const budget = 5
	reg, lim := guarded(t, budget, GuardOptions{})
	const addr = "192.0.2.10"
	succeed := func(n int) {
		t.Helper()
		for range n {
			for _, c := range [][2]string{{"hashed", hashedSecret}, {"basic", plainSecret}} {
				if _, err := basicFrom(t, reg, addr, c[0], c[1]); err != nil {
					t.Fatalf("%s with its secret: %v", c[0], err)
				}
			}
		}
	}
	fail := func(want string) {
		t.Helper()
		if _, err := basicFrom(t, reg, addr, "basic", "wrong"); outcome(t, err) != want {
			t.Fatalf("a wrong secret: %v, want %s", err, want)
		}
	}
	succeed(25)
	if lim.allows.Load() != 1 || lim.refunds.Load() != 1 {
		t.Fatalf("50 successes: %d tokens taken, %d given back; want the first bcrypt check's 1 and 1", lim.allows.Load(), lim.refunds.Load())
	}
	fail("invalid_client")
	fail("invalid_client")
	succeed(25) // in the middle of the failures: neither costs nor refills
	for range budget - 2 {
		fail("invalid_client")
	}
	fail("limited") // the whole budget, and only it, was there
	if lim.allows.Load() != 1+budget+1 {
		t.Fatalf("100 successes and %d failures asked the limit %d times, want %d", budget+1, lim.allows.Load(), 1+budget+1)
	}
}

// TestGuardKeysIPv6By64: without a Key function the failure budget of an
// IPv6 source is its /64's, as with httpapi.Limits.AddrKey, so a host that
// rotates through the addresses of its /64 does not get a fresh budget
// with each; another /64 keeps its own. IPv4 keys by the address.
func TestGuardKeysIPv6By64(t *testing.T) {
	reg, _ := guarded(t, 3, GuardOptions{})
	for i, want := range []string{"invalid_client", "invalid_client", "invalid_client", "limited", "limited"} {
		addr := fmt.Sprintf("2001:db8:1:2::%x", i+1) // a new address of the same /64 each time
		if _, err := basicFrom(t, reg, addr, "basic", "wrong"); outcome(t, err) != want {
			t.Fatalf("failure %d from %s: %v, want %s", i+1, addr, err, want)
		}
	}
	if _, err := basicFrom(t, reg, "2001:db8:1:2:ffff:ffff:ffff:ffff", "basic", plainSecret); outcome(t, err) != "limited" {
		t.Fatalf("the right secret from another address of the refused /64: %v, want limited", err)
	}
	if _, err := basicFrom(t, reg, "2001:db8:1:3::1", "basic", plainSecret); err != nil {
		t.Fatalf("the next /64: %v", err)
	}
	if _, err := basicFrom(t, reg, "2001:db8:1:3::1", "basic", "wrong"); outcome(t, err) != "invalid_client" {
		t.Fatalf("a failure from the next /64: %v, want its own budget", err)
	}

	for remote, want := range map[string]string{
		"192.0.2.1:443":                  "192.0.2.1",
		"[2001:db8:1:2:3:4:5:6]:443":     "2001:db8:1:2::/64",
		"[2001:db8:1:2::7]:1":            "2001:db8:1:2::/64",
		"[fe80::1%eth0]:443":             "fe80::/64",
		"[::ffff:192.0.2.1]:443":         "192.0.2.1", // IPv4-mapped: the IPv4 address
		"not an address":                 "not an address",
		"[2001:db8:ffff:ffff:1::1]:8080": "2001:db8:ffff:ffff::/64",
	} {
		req := httptest.NewRequest(http.MethodPost, tokenEndpoint, nil)
		req.RemoteAddr = remote
		if got := peerKey(req); got != want {
			t.Errorf("peerKey(%q) = %q, want %q", remote, got, want)
		}
	}
}

// TestGuardRefusalMemoryFull: with its memory of refusals full of live
// ones, a Guard neither drops one of them nor grows: a newly drained
// address is still refused its failures by the limit itself, only not
// remembered (its right secret is served until its next failure); once
// the refusals have ended, the next that needs room sweeps them out and
// is remembered.
func TestGuardRefusalMemoryFull(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); defer mu.Unlock(); now = now.Add(d) }
	reg := testRegistry(t)
	reg.Guard = NewGuard(GuardOptions{Failures: limit.New(limit.Rate{Requests: 1, Per: time.Minute}, 0), Now: clock})
	m := &reg.Guard.blocked
	size := func() int { m.mu.RLock(); defer m.mu.RUnlock(); return len(m.addrs) }

	// A live refusal of 192.0.2.40 through the front door, then the rest
	// of the memory filled with live refusals of other addresses.
	drain := func(addr string) {
		t.Helper()
		for i, want := range []string{"invalid_client", "limited"} {
			if _, err := basicFrom(t, reg, addr, "basic", "wrong"); outcome(t, err) != want {
				t.Fatalf("%s failure %d: %v, want %s", addr, i+1, err, want)
			}
		}
	}
	drain("192.0.2.40")
	m.mu.Lock()
	for i := len(m.addrs); i < maxBlocked; i++ {
		m.addrs["filler-"+strconv.Itoa(i)] = &refused{all: now.Add(30 * time.Second)}
	}
	m.n.Store(int32(len(m.addrs)))
	m.mu.Unlock()

	drain("192.0.2.41") // refused by the limit, not remembered
	if n := size(); n != maxBlocked {
		t.Fatalf("a full memory holds %d addresses, want %d", n, maxBlocked)
	}
	if _, err := basicFrom(t, reg, "192.0.2.41", "basic", plainSecret); err != nil {
		t.Fatalf("the right secret of an address refused while the memory was full: %v, want served", err)
	}
	if _, err := basicFrom(t, reg, "192.0.2.41", "basic", "wrong"); outcome(t, err) != "limited" {
		t.Fatalf("its next failure: %v, want limited by the limit itself", err)
	}
	if _, err := basicFrom(t, reg, "192.0.2.40", "basic", plainSecret); outcome(t, err) != "limited" {
		t.Fatalf("a live refusal in a full memory: %v, want still refused", err)
	}

	// Every refusal has ended: the next one sweeps them out.
	advance(time.Minute)
	drain("192.0.2.42")
	if n := size(); n != 1 {
		t.Fatalf("after the sweep the memory holds %d addresses, want 1", n)
	}
	if _, err := basicFrom(t, reg, "192.0.2.42", "basic", plainSecret); outcome(t, err) != "limited" {
		t.Fatalf("the right secret of an address refused after the sweep: %v, want limited", err)
	}
	if _, err := basicFrom(t, reg, "192.0.2.40", "basic", plainSecret); err != nil {
		t.Fatalf("an ended refusal: %v", err)
	}
}

// TestGuardCountsEveryMethodButNoCredentials: bad client assertions count
// like wrong secrets; a request without credentials (a client waiting for
// the challenge) does not.
func TestGuardCountsEveryMethodButNoCredentials(t *testing.T) {
	reg, _ := guarded(t, 3, GuardOptions{})
	for range 10 {
		req := httptest.NewRequest(http.MethodPost, tokenEndpoint, nil)
		req.RemoteAddr = "192.0.2.11:1"
		if _, err := reg.Authenticate(t.Context(), req, url.Values{"client_id": {"basic"}}, tokenEndpoint); outcome(t, err) != "invalid_client" {
			t.Fatalf("no credentials: %v", err)
		}
	}
	var got []string
	for range 5 {
		req := httptest.NewRequest(http.MethodPost, tokenEndpoint, nil)
		req.RemoteAddr = "192.0.2.11:1"
		_, err := reg.Authenticate(t.Context(), req, assertionForm(assertion(t, otherKey(), "jwt", tokenEndpoint, nil)), tokenEndpoint)
		got = append(got, outcome(t, err))
	}
	if want := "[invalid_client invalid_client invalid_client limited limited]"; fmt.Sprint(got) != want {
		t.Fatalf("5 bad assertions: %v, want %s", got, want)
	}
}

// TestGuardBoundsConcurrentBcrypt: no more bcrypt checks run at once than
// there are slots, and a check that finds none free within the wait is
// answered temporarily_unavailable (503, Retry-After) instead of queueing.
func TestGuardBoundsConcurrentBcrypt(t *testing.T) {
	reg, _ := guarded(t, 1000, GuardOptions{HashSlots: 2, HashWait: 50 * time.Millisecond})
	hashed, _ := reg.Lookup("hashed")
	release := make(chan struct{})
	var running, peak atomic.Int32
	entered := make(chan struct{}, 100)
	hashed.secret.compare = func(hash, pw []byte) error {
		n := running.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		entered <- struct{}{}
		<-release
		running.Add(-1)
		return bcrypt.ErrMismatchedHashAndPassword
	}
	var wg sync.WaitGroup
	results := make(chan string, 2)
	for range 2 {
		wg.Go(func() {
			_, err := basicFrom(t, reg, "192.0.2.12", "hashed", "wrong")
			results <- outcome(t, err)
		})
	}
	<-entered
	<-entered // both slots are taken
	for range 5 {
		if _, err := basicFrom(t, reg, "192.0.2.13", "hashed", "wrong"); outcome(t, err) != "busy" {
			t.Fatalf("with every slot taken: %v, want busy", err)
		}
	}
	close(release)
	wg.Wait()
	close(results)
	hashed.secret.compare = bcrypt.CompareHashAndPassword
	for o := range results {
		if o != "invalid_client" {
			t.Fatalf("a check that had a slot: %s", o)
		}
	}
	if peak.Load() != 2 {
		t.Fatalf("%d bcrypt checks ran at once with 2 slots", peak.Load())
	}
	// A busy answer gave its failure token back: it was not checked.
	if _, err := basicFrom(t, reg, "192.0.2.13", "hashed", hashedSecret); err != nil {
		t.Fatalf("the right secret once a slot is free: %v", err)
	}
}

// TestGuardBlockExpires: once refused, an address is refused before any
// check, even of the right secret, until its bucket has a token again.
func TestGuardBlockExpires(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	reg := testRegistry(t)
	reg.Guard = NewGuard(GuardOptions{Failures: limit.New(limit.Rate{Requests: 2, Per: time.Minute}, 0), Now: clock})
	for i, want := range []string{"invalid_client", "invalid_client", "limited"} {
		if _, err := basicFrom(t, reg, "192.0.2.14", "basic", "wrong"); outcome(t, err) != want {
			t.Fatalf("failure %d: %v, want %s", i+1, err, want)
		}
	}
	_, err := basicFrom(t, reg, "192.0.2.14", "basic", plainSecret)
	var le *LimitError
	if !errors.As(err, &le) || le.RetryAfter() != 30*time.Second {
		t.Fatalf("refused address: %v, want limited with Retry-After 30s", err)
	}
	mu.Lock()
	now = now.Add(30 * time.Second)
	mu.Unlock()
	if _, err := basicFrom(t, reg, "192.0.2.14", "basic", plainSecret); err != nil {
		t.Fatalf("after Retry-After: %v", err)
	}
}

// TestGuardSprayingClientIDsRefusesTheAddress: an address refused with
// more than maxBlockedIDs client_ids is refused whole, so spraying
// client_ids neither escapes the limit nor grows the Guard's memory; one
// refused with fewer keeps its other clients served.
func TestGuardSprayingClientIDsRefusesTheAddress(t *testing.T) {
	reg, _ := guarded(t, 1, GuardOptions{})
	spray := func(addr string, n int) {
		basicFrom(t, reg, addr, "nobody-0", "wrong") // uses the one token
		for i := range n {
			if _, err := basicFrom(t, reg, addr, "nobody-"+strconv.Itoa(i+1), "wrong"); outcome(t, err) != "limited" {
				t.Fatalf("failure %d on a drained address: %v", i+1, err)
			}
		}
	}
	spray("192.0.2.20", maxBlockedIDs-1)
	if _, err := basicFrom(t, reg, "192.0.2.20", "basic", plainSecret); err != nil {
		t.Fatalf("%d client_ids refused: another client on the address: %v", maxBlockedIDs-1, err)
	}
	spray("192.0.2.21", maxBlockedIDs+1)
	if _, err := basicFrom(t, reg, "192.0.2.21", "basic", plainSecret); outcome(t, err) != "limited" {
		t.Fatalf("%d client_ids refused: another client on the address: %v, want the address refused", maxBlockedIDs+1, err)
	}
	reg.Guard.blocked.mu.Lock()
	n := len(reg.Guard.blocked.addrs["192.0.2.21"].ids)
	reg.Guard.blocked.mu.Unlock()
	if n > maxBlockedIDs {
		t.Fatalf("%d client_ids remembered for one address", n)
	}
}

// TestGuardCancelledWhileWaitingForASlotIsNotAFailure: a request that ends
// while it waits for a bcrypt slot is temporarily_unavailable, runs no
// check, and gives its failure token back.
func TestGuardCancelledWhileWaitingForASlotIsNotAFailure(t *testing.T) {
	reg, lim := guarded(t, 1, GuardOptions{HashSlots: 1, HashWait: time.Minute})
	release := limittest.HoldSlots(t, reg.Guard.slots) // the one slot is taken
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	req := httptest.NewRequestWithContext(ctx, http.MethodPost, tokenEndpoint, nil)
	req.RemoteAddr = "192.0.2.30:1"
	req.Header.Set("Authorization", basicHeader("hashed", "wrong"))
	_, err := reg.Authenticate(ctx, req, url.Values{}, tokenEndpoint)
	if e := ciba.AsError(err); e.Code != ciba.CodeTemporarilyUnavailable || !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want temporarily_unavailable wrapping context.Canceled", err)
	}
	if reg.Guard.Hashes() != 0 || lim.refunds.Load() != 1 {
		t.Fatalf("%d bcrypt checks, %d tokens given back; want 0 and 1", reg.Guard.Hashes(), lim.refunds.Load())
	}
	release()
	// The token is back: the next wrong secret is checked, not refused.
	if _, err := basicFrom(t, reg, "192.0.2.30", "hashed", "wrong"); outcome(t, err) != "invalid_client" {
		t.Fatalf("after the cancelled request: %v", err)
	}
}
