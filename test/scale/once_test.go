package scale

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// TestDeliveriesOnceUnderContention: many ping and push flows across the
// instances, with the machine's CPUs kept busy by spinning goroutines in
// the test process, and every user's message and every client
// notification goes out exactly once (issue #21, item 3: under load one
// instance sent a ping and its webhook message twice, 11 ms apart, as its
// own lease on the attempt had run out), even when the client's endpoint
// is slower than the first retry backoff. Bounded: onceFlows flows, each
// wait bounded by waitTimeout.
func TestDeliveriesOnceUnderContention(t *testing.T) {
	if testing.Short() {
		t.Skip("stress test")
	}
	const onceFlows = 24
	c := newCluster(t)
	// The client's endpoint answers more slowly than the first retry
	// backoff (1 s), which is all the lease on an attempt used to last.
	c.notify.Delay(1500 * time.Millisecond)

	var stop atomic.Bool
	var spinners sync.WaitGroup
	for range 2 * runtime.GOMAXPROCS(0) {
		spinners.Add(1)
		go func() {
			defer spinners.Done()
			for n := 0; !stop.Load(); n++ {
				_ = n * n
			}
		}()
	}
	defer func() { stop.Store(true); spinners.Wait() }()

	// Created on one instance, answered on the next: the user's message
	// goes out from the first, the client's notification from the second.
	reqs := make([]request, onceFlows)
	for i := range reqs {
		cl := testutil.DemoPing
		if i%2 == 1 {
			cl = testutil.DemoPush
		}
		reqs[i] = c.authorize(i%instances, cl, "Once")
	}
	for i, req := range reqs {
		c.answerOn((i+1)%instances, c.message(req), "approved")
	}
	cx := ctx(t)
	for _, req := range reqs {
		if _, err := c.notify.WaitFor(cx, req.AuthReqID); err != nil {
			t.Fatal(err)
		}
	}
	// A second send would follow the first within about a second (the
	// retry backoff the old lease lasted); wait longer than that.
	pause(cx, settle)
	messages := map[string]int{}
	for _, m := range c.hook.Messages() {
		messages[m.BindingMessage]++
	}
	for _, req := range reqs {
		if n := len(c.notify.For(req.AuthReqID)); n != 1 {
			t.Errorf("%s request %s: %d notifications across the instances, want exactly 1", req.Client.ID, req.AuthReqID, n)
		}
		if n := messages[req.Binding]; n != 1 {
			t.Errorf("%s request %s: %d webhook messages, want exactly 1", req.Client.ID, req.AuthReqID, n)
		}
	}
}
