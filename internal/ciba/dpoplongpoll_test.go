package ciba_test

import (
	"context"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// TestLongPollWrongKeyNotHeld: with long polling on, a poll of a pending
// request bound to a DPoP key, with another key or none, is answered
// invalid_grant at once rather than held (a held poll used to be answered
// with the tokens once the approval landed, without the key check); the
// key holder's poll is held and gets the tokens when the user approves.
func TestLongPollWrongKeyNotHeld(t *testing.T) {
	f := newFixture(t, func(c *ciba.Config, _ *ciba.Deps) { c.LongPoll = 30 * time.Second })
	id := f.create(t, pollClient, func(p *ciba.AuthParams) { p.DPoPJKT = "key-a" })
	for _, presented := range []string{"key-b", ""} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		start := time.Now()
		_, err := f.svc.PollBound(ctx, pollClient, id, ciba.Binding{JKT: presented})
		cancel()
		if code(err) != ciba.CodeInvalidGrant {
			t.Fatalf("poll with key %q: %v, want invalid_grant", presented, err)
		}
		if d := time.Since(start); d > 4*time.Second {
			t.Fatalf("poll with key %q was held %s", presented, d)
		}
	}
	got := make(chan error, 1)
	go func() {
		_, err := f.svc.PollBound(context.Background(), pollClient, id, ciba.Binding{JKT: "key-a"})
		got <- err
	}()
	// Approve once the holder's poll is held (its hold is recorded in the
	// pace), so the tokens reach it through the hold.
	deadline := time.Now().Add(5 * time.Second)
	for {
		p, err := f.store.UpdatePace(context.Background(), id, func(*ciba.Pace) error { return nil })
		if err == nil && !p.HoldUntil.IsZero() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the key holder's poll was not held")
		}
		time.Sleep(5 * time.Millisecond)
	}
	r, err := f.store.GetRequest(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.svc.ApproveWithMinter(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("the key holder's held poll: %v, want the tokens", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the key holder's held poll did not return")
	}
}
