package ciba_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// orderedChannel answers every Send with err and says it was asked.
type orderedChannel struct {
	name  string
	err   error
	asked chan string
}

func (c *orderedChannel) Name() string { return c.name }
func (c *orderedChannel) Send(context.Context, *ciba.AuthRequest, *ciba.Client, ciba.Notice) error {
	c.asked <- c.name
	return c.err
}

// TestChannelsAreTriedInOrder: a channel that cannot reach the user, or
// fails for good, hands the message to the next in the same attempt; any
// other failure ends the attempt there; the first that takes it ends it.
// Every send is recorded in the delivery's Tries.
func TestChannelsAreTriedInOrder(t *testing.T) {
	unreachable := fmt.Errorf("%w: no address", ciba.ErrUnreachable)
	for _, tc := range []struct {
		name      string
		errs      []error
		wantTries string
		wantDone  bool
	}{
		{"the first that can reach the user takes it", []error{unreachable, nil, nil}, "a:unreachable b:delivered", true},
		{"a permanent failure hands over to the next", []error{ciba.Permanent(errors.New("gone")), unreachable, nil}, "a:permanent b:unreachable c:delivered", true},
		{"a failure worth retrying ends the attempt", []error{unreachable, errors.New("503"), nil}, "a:unreachable b:failed", false},
		{"no channel takes it: retried later", []error{unreachable, ciba.Permanent(errors.New("5xx")), unreachable}, "a:unreachable b:permanent c:unreachable", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			asked := make(chan string, 16)
			var chans []ciba.Channel
			for i, err := range tc.errs {
				chans = append(chans, &orderedChannel{name: string(rune('a' + i)), err: err, asked: asked})
			}
			f := newFixture(t, func(c *ciba.Config, d *ciba.Deps) { d.Now = time.Now; d.Channels = chans })
			id := f.create(t, pollClient)
			f.run(t)
			var r *ciba.AuthRequest
			deadline := time.Now().Add(10 * time.Second)
			for {
				var err error
				if r, err = f.store.GetRequest(context.Background(), id); err != nil {
					t.Fatal(err)
				}
				if len(r.UserNotice.Tries) > 0 || time.Now().After(deadline) {
					break
				}
				time.Sleep(10 * time.Millisecond) // polls the store for the attempt's record
			}
			var got []string
			for _, tr := range r.UserNotice.Tries {
				got = append(got, tr.Channel+":"+tr.Outcome)
				if tr.At.IsZero() || (tr.Outcome != "delivered") != (tr.Error != "") {
					t.Errorf("try %+v: want a time, and an error exactly when not delivered", tr)
				}
			}
			if strings.Join(got, " ") != tc.wantTries {
				t.Fatalf("tries = %q, want %q", strings.Join(got, " "), tc.wantTries)
			}
			if r.UserNotice.Done != tc.wantDone {
				t.Fatalf("done = %v, want %v (%+v)", r.UserNotice.Done, tc.wantDone, r.UserNotice)
			}
		})
	}
}

// TestOneChannelIsRetriedWhateverItsError: with a single channel nothing
// changes: even an unreachable user or a permanent failure is tried again
// after the backoff, as before there were several channels.
func TestOneChannelIsRetriedWhateverItsError(t *testing.T) {
	asked := make(chan string, 16)
	ch := &orderedChannel{name: "only", err: ciba.Permanent(errors.New("refused")), asked: asked}
	f := newFixture(t, func(c *ciba.Config, d *ciba.Deps) { d.Now = time.Now; d.Channel = ch })
	f.create(t, pollClient)
	f.run(t)
	wait(t, asked)
	wait(t, asked) // the retry, a backoff (1 s) later
}
