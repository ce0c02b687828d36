package ciba_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/limit"
)

// userCodeFixture is a service whose UserCodeFailures is the one cibaproxy
// wires (cmd/cibaproxy userCodeFailures): 2 wrong codes per client and
// user, 3 per user, both per hour, in memory.
func userCodeFixture(t *testing.T) (*fixture, *atomic.Int64) {
	t.Helper()
	perClient := limit.New(limit.Rate{Requests: 2, Per: time.Hour}, 0)
	perUser := limit.New(limit.Rate{Requests: 3, Per: time.Hour}, 0)
	var asked atomic.Int64
	f := newFixture(t, func(_ *ciba.Config, d *ciba.Deps) {
		d.UserCodeFailures = func(ctx context.Context, clientID, user string, now time.Time) (bool, time.Duration, func(bool), error) {
			asked.Add(1)
			return limit.ReserveAll(ctx, func() time.Time { return now },
				limit.Bucket{Limit: perClient, Key: clientID + "\x00" + user}, limit.Bucket{Limit: perUser, Key: user})
		}
	})
	return f, &asked
}

func userCodeTry(f *fixture, c *ciba.Client, user, code string) error {
	_, err := f.svc.Authorize(context.Background(), c, ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: user},
		UserCode: code, ClientNotificationToken: "note-token"})
	return err
}

func TestUserCodeGuessingIsLockedOutPerClientAndUser(t *testing.T) {
	f, asked := userCodeFixture(t)
	// A typo, then the right code: one try spent.
	if got := code(userCodeTry(f, pollClient, "alice", "1243")); got != ciba.CodeInvalidUserCode {
		t.Fatalf("a wrong code: %q, want invalid_user_code", got)
	}
	if err := userCodeTry(f, pollClient, "alice", "1234"); err != nil {
		t.Fatalf("the right code after a typo: %v", err)
	}
	// Right codes cost nothing.
	for i := range 5 {
		if err := userCodeTry(f, pollClient, "alice", "1234"); err != nil {
			t.Fatalf("right code %d: %v", i, err)
		}
	}
	if got := code(userCodeTry(f, pollClient, "alice", "0000")); got != ciba.CodeInvalidUserCode {
		t.Fatalf("the client's second wrong code: %q, want invalid_user_code", got)
	}
	// The client's share is spent: its right code is not checked.
	err := userCodeTry(f, pollClient, "alice", "1234")
	e := ciba.AsError(err)
	if e == nil || e.Code != ciba.CodeAccessDenied || e.HTTPStatus() != http.StatusForbidden || !strings.Contains(e.Description, "user_code") {
		t.Fatalf("the right code from a locked-out client: %v, want access_denied (403) naming user_code", err)
	}
	// Another client is not locked out by it; requests without a code,
	// and for other users, are not either.
	if err := userCodeTry(f, pingClient, "alice", "1234"); err != nil {
		t.Fatalf("another client's right code: %v", err)
	}
	if err := userCodeTry(f, pollClient, "alice", ""); err != nil {
		t.Fatalf("a request without a user_code from the locked-out client: %v", err)
	}
	if got := code(userCodeTry(f, pollClient, "bob", "1")); got != ciba.CodeInvalidUserCode {
		t.Fatalf("another user from the locked-out client: %q, want invalid_user_code (checked)", got)
	}
	// The user's third wrong code, from a second client, spends alice's
	// tries: every client is then refused until they come back.
	if got := code(userCodeTry(f, pingClient, "alice", "0001")); got != ciba.CodeInvalidUserCode {
		t.Fatalf("the second client's wrong code: %q, want invalid_user_code", got)
	}
	if got := code(userCodeTry(f, pushClient, "alice", "1234")); got != ciba.CodeAccessDenied {
		t.Fatalf("a third client once alice's tries are spent: %q, want access_denied", got)
	}
	f.clock.Add(20 * time.Minute) // one of alice's tries is back (3 per hour)
	if err := userCodeTry(f, pushClient, "alice", "1234"); err != nil {
		t.Fatalf("a third client after a try came back: %v", err)
	}
	if asked.Load() == 0 {
		t.Fatal("UserCodeFailures was never asked")
	}
}

// TestUserCodeTriesInParallelAreAllCounted: 100 wrong codes at once from
// one client get exactly its share checked.
func TestUserCodeTriesInParallelAreAllCounted(t *testing.T) {
	f, _ := userCodeFixture(t)
	var mu sync.Mutex
	got := map[ciba.ErrorCode]int{}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 100 {
		wg.Go(func() {
			<-start
			c := code(userCodeTry(f, pollClient, "alice", fmt.Sprintf("%04d", 5000+i)))
			mu.Lock()
			got[c]++
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	if got[ciba.CodeInvalidUserCode] != 2 || got[ciba.CodeAccessDenied] != 98 {
		t.Fatalf("100 wrong codes at once: %v, want 2 checked (invalid_user_code) and 98 access_denied", got)
	}
}
