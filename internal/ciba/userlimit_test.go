package ciba_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/limit"
)

// federated is an upstream like oidc: a login_hint names a user only
// verified at sign-in (no subject yet), an id_token_hint "idt:<sub>:<n>"
// is verified here and names sub.
type federated struct{}

func (federated) ResolveUser(_ context.Context, _ *ciba.Client, h ciba.Hint) (ciba.User, error) {
	if h.IDTokenHint != "" {
		parts := strings.Split(h.IDTokenHint, ":")
		if len(parts) != 3 || parts[0] != "idt" {
			return ciba.User{}, ciba.Errorf(ciba.CodeInvalidRequest, "bad id_token_hint")
		}
		return ciba.User{Subject: parts[1], Display: parts[1]}, nil
	}
	if h.LoginHint != "" {
		return ciba.User{Display: h.LoginHint}, nil
	}
	return ciba.User{}, ciba.Errorf(ciba.CodeInvalidRequest, "unsupported hint")
}
func (federated) CheckUserCode(context.Context, ciba.User, string) error { return nil }
func (federated) SupportsUserCode() bool                                 { return false }

// defaultUserRate is limits.requests_per_user at its default.
var defaultUserRate = limit.Rate{Requests: 10, Per: 10 * time.Minute}

// limitedFixture is a fixture with the real in-memory per-user limit at its
// default rate, recording every key it is asked about. The clock stands
// still, so no token comes back during a test.
func limitedFixture(t *testing.T, mod func(*ciba.Config, *ciba.Deps)) (*fixture, *keyLog) {
	t.Helper()
	lim := limit.New(defaultUserRate, 1000)
	keys := &keyLog{}
	return newFixture(t, func(c *ciba.Config, d *ciba.Deps) {
		d.UserLimit = func(ctx context.Context, key string, now time.Time) (bool, time.Duration, error) {
			keys.add(key)
			return lim.Allow(ctx, key, now)
		}
		if mod != nil {
			mod(c, d)
		}
	}), keys
}

// keyLog records the distinct keys the limit was asked about.
type keyLog struct {
	mu   sync.Mutex
	keys map[string]bool
}

func (k *keyLog) add(key string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.keys == nil {
		k.keys = map[string]bool{}
	}
	k.keys[key] = true
}

func (k *keyLog) distinct() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []string
	for key := range k.keys {
		out = append(out, key)
	}
	return out
}

// burst sends n requests built by hint(i) at once and counts them by
// outcome: accepted, refused with access_denied, other.
func burst(t *testing.T, f *fixture, n int, hint func(i int) ciba.Hint) (ok, denied int) {
	t.Helper()
	var okN, deniedN atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, err := f.svc.Authorize(context.Background(), pollClient, ciba.AuthParams{Scope: "openid", Hint: hint(i)})
			switch code(err) {
			case "":
				okN.Add(1)
			case ciba.CodeAccessDenied:
				deniedN.Add(1)
			default:
				t.Errorf("request %d: %v", i, err)
			}
		}()
	}
	close(start)
	wg.Wait()
	return int(okN.Load()), int(deniedN.Load())
}

// variants are ways a client may write alice@example.com that name the
// same user: case, surrounding and inner white space, full-width letters,
// a zero-width space, a soft hyphen.
var variants = []string{
	"alice@example.com", "Alice@Example.COM", " alice@example.com", "alice@example.com\t",
	"ALICE@EXAMPLE.COM ", "ａｌｉｃｅ@example.com", "ali\u200bce@example.com", "al\u00adice@example.com",
	"alice @example.com", "\u00a0alice@example.com",
}

// TestUserLimitKeys checks how the per-user limit is keyed at its default
// rate (10 per 10 minutes): by the verified subject when there is one, by
// the normalised hint before sign-in, never one bucket for all.
func TestUserLimitKeys(t *testing.T) {
	t.Parallel()
	federatedUp := func(_ *ciba.Config, d *ciba.Deps) { d.Upstream = federated{} }

	t.Run("50 users named by login_hint before sign-in each get their requests", func(t *testing.T) {
		t.Parallel()
		f, keys := limitedFixture(t, federatedUp)
		for i := range 50 {
			for j := range 2 {
				if _, err := f.svc.Authorize(context.Background(), pollClient, ciba.AuthParams{
					Scope: "openid", Hint: ciba.Hint{LoginHint: fmt.Sprintf("user%d@example.com", i)},
				}); err != nil {
					t.Fatalf("user %d, request %d: %v", i, j, err)
				}
			}
		}
		if n := len(keys.distinct()); n != 50 {
			t.Errorf("%d distinct keys for 50 users, want 50", n)
		}
	})

	t.Run("one user flooded in a parallel burst of 120 gets exactly 10", func(t *testing.T) {
		t.Parallel()
		f, _ := limitedFixture(t, federatedUp)
		ok, denied := burst(t, f, 120, func(int) ciba.Hint { return ciba.Hint{LoginHint: "bob@example.com"} })
		if ok != defaultUserRate.Requests || denied != 120-defaultUserRate.Requests {
			t.Errorf("accepted %d, denied %d; want %d and %d", ok, denied, defaultUserRate.Requests, 120-defaultUserRate.Requests)
		}
		if n := storedRequests(t, f.store); n != defaultUserRate.Requests {
			t.Errorf("%d requests stored, want %d", n, defaultUserRate.Requests)
		}
	})

	t.Run("case, white space and look-alike variants of a hint share one bucket", func(t *testing.T) {
		t.Parallel()
		f, keys := limitedFixture(t, federatedUp)
		ok, denied := burst(t, f, 120, func(i int) ciba.Hint { return ciba.Hint{LoginHint: variants[i%len(variants)]} })
		if ok != defaultUserRate.Requests || denied != 120-defaultUserRate.Requests {
			t.Errorf("accepted %d, denied %d; want %d and %d", ok, denied, defaultUserRate.Requests, 120-defaultUserRate.Requests)
		}
		if k := keys.distinct(); len(k) != 1 {
			t.Errorf("%d keys for the variants of one hint, want 1", len(k))
		}
		// Another user is not affected.
		if _, err := f.svc.Authorize(context.Background(), pollClient, ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: "carol@example.com"}}); err != nil {
			t.Errorf("another user after the flood: %v", err)
		}
	})

	t.Run("a verified id_token_hint is keyed by its subject, however many tokens", func(t *testing.T) {
		t.Parallel()
		f, keys := limitedFixture(t, federatedUp)
		ok, _ := burst(t, f, 40, func(i int) ciba.Hint { return ciba.Hint{IDTokenHint: fmt.Sprintf("idt:sub-dave:%d", i)} })
		if ok != defaultUserRate.Requests {
			t.Errorf("accepted %d requests with distinct tokens for one subject, want %d", ok, defaultUserRate.Requests)
		}
		if k := keys.distinct(); len(k) != 1 {
			t.Errorf("%d keys, want 1", len(k))
		}
	})

	t.Run("the local upstream keys by subject", func(t *testing.T) {
		t.Parallel()
		f, keys := limitedFixture(t, nil)
		ok, denied := burst(t, f, 100, func(int) ciba.Hint { return ciba.Hint{LoginHint: "alice"} })
		if ok != defaultUserRate.Requests || denied != 100-defaultUserRate.Requests {
			t.Errorf("accepted %d, denied %d", ok, denied)
		}
		if _, err := f.svc.Authorize(context.Background(), pollClient, ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: "bob"}}); err != nil {
			t.Errorf("bob after alice's flood: %v", err)
		}
		if k := keys.distinct(); len(k) != 2 {
			t.Errorf("%d keys for two users, want 2", len(k))
		}
	})

	t.Run("a hint that is empty once normalised is invalid_request, not a shared bucket", func(t *testing.T) {
		t.Parallel()
		f, keys := limitedFixture(t, federatedUp)
		for _, h := range []string{" ", "\u200b", "\u00a0\t"} {
			_, err := f.svc.Authorize(context.Background(), pollClient, ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: h}})
			if code(err) != ciba.CodeInvalidRequest {
				t.Errorf("login_hint %q: %v, want invalid_request", h, err)
			}
		}
		if k := keys.distinct(); len(k) != 0 {
			t.Errorf("the limit was asked about %d keys, want none", len(k))
		}
	})

	t.Run("keys are fixed-size hashes, never the hint", func(t *testing.T) {
		t.Parallel()
		f, keys := limitedFixture(t, federatedUp)
		hint := strings.Repeat("x", ciba.MaxLoginHint-len("@example.com")) + "@example.com"
		if _, err := f.svc.Authorize(context.Background(), pollClient, ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: hint}}); err != nil {
			t.Fatal(err)
		}
		for _, k := range keys.distinct() {
			if len(k) != 32 || strings.Contains(k, "example") {
				t.Errorf("key %q: want a 32-character hash", k)
			}
		}
	})
}

// TestRelayUserLimitKeys checks the per-user limit of relayed requests for
// every hint kind: the hint normalised, or whom a token names read
// unverified (Deps.HintSubject), so that minting a fresh token per request
// gives no fresh bucket.
func TestRelayUserLimitKeys(t *testing.T) {
	t.Parallel()
	relayed := func(t *testing.T) (*fixture, *keyLog) {
		relay := &fakeRelay{polls: map[string]int{}, expires: time.Minute, interval: time.Hour}
		return limitedFixture(t, func(_ *ciba.Config, d *ciba.Deps) {
			d.Relay, d.Upstream = relay, nil
			// Tokens here are "tok:<name>:<n>"; anything else is unreadable.
			d.HintSubject = func(idTokenHint, loginHintToken string) string {
				raw := idTokenHint + loginHintToken
				if parts := strings.Split(raw, ":"); len(parts) == 3 && parts[0] == "tok" {
					return parts[1]
				}
				return ""
			}
		})
	}
	for _, tc := range []struct {
		name string
		hint func(i int) ciba.Hint
	}{
		{"login_hint variants", func(i int) ciba.Hint { return ciba.Hint{LoginHint: variants[i%len(variants)]} }},
		{"fresh login_hint_tokens naming one user", func(i int) ciba.Hint {
			return ciba.Hint{LoginHintToken: fmt.Sprintf("tok:%s:%d", variants[i%len(variants)], i)}
		}},
		{"fresh id_token_hints naming one user", func(i int) ciba.Hint { return ciba.Hint{IDTokenHint: fmt.Sprintf("tok:Alice@example.com:%d", i)} }},
		{"one unreadable token replayed", func(int) ciba.Hint { return ciba.Hint{LoginHintToken: "opaque-token-of-alice"} }},
		{"hints of every kind naming one user", func(i int) ciba.Hint {
			switch i % 3 {
			case 0:
				return ciba.Hint{LoginHint: "alice@example.com"}
			case 1:
				return ciba.Hint{IDTokenHint: fmt.Sprintf("tok:ALICE@example.com:%d", i)}
			}
			return ciba.Hint{LoginHintToken: fmt.Sprintf("tok: alice@example.com:%d", i)}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, keys := relayed(t)
			ok, denied := burst(t, f, 100, tc.hint)
			if ok != defaultUserRate.Requests || denied != 100-defaultUserRate.Requests {
				t.Errorf("accepted %d, denied %d; want %d and %d", ok, denied, defaultUserRate.Requests, 100-defaultUserRate.Requests)
			}
			if k := keys.distinct(); len(k) != 1 {
				t.Errorf("%d keys, want 1", len(k))
			}
		})
	}
}
