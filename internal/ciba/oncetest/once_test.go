package oncetest_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/seal"
	"github.com/cibaproxy/cibaproxy/internal/store/memory"
	redisstore "github.com/cibaproxy/cibaproxy/internal/store/redis"
	"github.com/cibaproxy/cibaproxy/internal/store/redis/redistest"
)

// onceReceiver is the user's device (a Channel) and the clients'
// notification endpoint (a Notifier) at once. It counts the calls each
// message gets, and the calls that began while another call of the same
// message was under way; each call takes delay() before it answers.
type onceReceiver struct {
	delay func() time.Duration

	mu      sync.Mutex
	calls   map[string]int // per message: "notice <id>", "ping <id>", "push <id>"
	active  map[string]int
	overlap int
	acked   map[string]bool
}

func newOnceReceiver(delay func() time.Duration) *onceReceiver {
	return &onceReceiver{delay: delay, calls: map[string]int{}, active: map[string]int{}, acked: map[string]bool{}}
}

func (o *onceReceiver) receive(ctx context.Context, msg string) error {
	o.mu.Lock()
	o.calls[msg]++
	if o.active[msg] > 0 {
		o.overlap++
	}
	o.active[msg]++
	o.mu.Unlock()
	defer func() {
		o.mu.Lock()
		o.active[msg]--
		o.mu.Unlock()
	}()
	t := time.NewTimer(o.delay())
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	o.mu.Lock()
	o.acked[msg] = true
	o.mu.Unlock()
	return nil
}

func (o *onceReceiver) Name() string { return "once" }

func (o *onceReceiver) Send(ctx context.Context, r *ciba.AuthRequest, _ *ciba.Client, _ ciba.Notice) error {
	return o.receive(ctx, "notice "+r.ID)
}

func (o *onceReceiver) Ping(ctx context.Context, _, _, id string) error {
	return o.receive(ctx, "ping "+id)
}

func (o *onceReceiver) Push(ctx context.Context, _, _ string, body []byte) error {
	var m struct {
		ID string `json:"auth_req_id"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return err
	}
	return o.receive(ctx, "push "+m.ID)
}

// settled reports whether no call is under way.
func (o *onceReceiver) settled() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, n := range o.active {
		if n > 0 {
			return false
		}
	}
	return true
}

// check fails t for every message of msgs not called exactly once, and
// for calls that overlapped.
func (o *onceReceiver) check(t *testing.T, msgs []string) {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, m := range msgs {
		if n := o.calls[m]; n != 1 {
			t.Errorf("%s: %d calls, want exactly 1", m, n)
		}
	}
	if o.overlap != 0 {
		t.Errorf("%d calls began while another call of the same message was under way", o.overlap)
	}
}

// onceInstances builds n services (instances) on the stores of stores
// (one per instance; the same store for all is one shared backend), with
// one receiver, one callback key and one sealing key, and runs their
// dispatchers until the test ends.
func onceInstances(t *testing.T, stores []ciba.Store, recv *onceReceiver) []*fixture {
	t.Helper()
	key := make([]byte, 32)
	rand.Read(key)
	ring, err := seal.NewRing(seal.Key{ID: "k", Secret: key})
	if err != nil {
		t.Fatal(err)
	}
	fs := make([]*fixture, len(stores))
	for i, st := range stores {
		fs[i] = newFixture(t, func(c *ciba.Config, d *ciba.Deps) {
			d.Store, d.Channel, d.Notifier = st, recv, recv
			d.CallbackKey, d.Sealer, d.Now = key, ring, time.Now
		})
		fs[i].run(t)
	}
	return fs
}

// onceDone waits, up to bound, until the messages of request id (the
// user's, and the client's unless poll) are recorded done in st.
func onceDone(ctx context.Context, st ciba.Store, id string, client bool) error {
	for {
		r, err := st.GetRequest(ctx, id)
		if err != nil {
			return err
		}
		if r.UserNotice.Done && (!client || r.ClientNotice.Done) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("request %s: deliveries not done: user %+v, client %+v", id, r.UserNotice, r.ClientNotice)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// TestDeliverySlowerThanBackoffSentOnce: a message whose receiver takes
// longer to answer than the first retry backoff (1 s) is sent once. The
// claim on an attempt used to last only that backoff, and the instance
// itself looked at the request again when it ran out and sent the message
// a second time while the first send was under way (issue #21, item 3).
func TestDeliverySlowerThanBackoffSentOnce(t *testing.T) {
	recv := newOnceReceiver(func() time.Duration { return 2500 * time.Millisecond })
	f := onceInstances(t, []ciba.Store{memory.New()}, recv)[0]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id := f.create(t, pingClient)
	// The user's message first: a request approved before its message was
	// sent no longer needs it.
	if err := onceDone(ctx, f.store, id, false); err != nil {
		t.Fatal(err)
	}
	f.approve(t, id)
	if err := onceDone(ctx, f.store, id, true); err != nil {
		t.Fatal(err)
	}
	for !recv.settled() {
		if ctx.Err() != nil {
			t.Fatal("calls still under way")
		}
		time.Sleep(10 * time.Millisecond)
	}
	recv.check(t, []string{"notice " + id, "ping " + id})
	if r, _ := f.store.GetRequest(ctx, id); r.UserNotice.Attempts != 1 || r.ClientNotice.Attempts != 1 {
		t.Errorf("attempts: user %d, client %d; want 1 and 1", r.UserNotice.Attempts, r.ClientNotice.Attempts)
	}
}

// TestDeliveryOnceUnderContention runs the delivery of many requests
// across three instances on one store, with the test process's CPUs kept
// busy by spinning goroutines and some receivers slower than the first
// retry backoff, and checks that every message went out exactly once. It
// is bounded: onceRounds rounds of onceRequests requests, and a minute.
func TestDeliveryOnceUnderContention(t *testing.T) {
	if testing.Short() {
		t.Skip("stress test")
	}
	t.Run("memory, three instances on one store", func(t *testing.T) {
		st := memory.New()
		onceStress(t, []ciba.Store{st, st, st})
	})
	t.Run("redis, three instances on one server", func(t *testing.T) {
		srv := redistest.Start(t)
		prefix := fmt.Sprintf("once%d:", time.Now().UnixNano())
		var stores []ciba.Store
		for range 3 {
			st, err := redisstore.Open(t.Context(), redisstore.Config{Addrs: []string{srv.Addr()}, KeyPrefix: prefix})
			if err != nil {
				t.Fatal(err)
			}
			// Cleanups run last in, first out: the dispatchers, started
			// after, stop before the stores close.
			t.Cleanup(func() { _ = st.Close() })
			stores = append(stores, st)
		}
		onceStress(t, stores)
	})
}

const (
	onceRounds   = 3
	onceRequests = 16
)

func onceStress(t *testing.T, stores []ciba.Store) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// CPU contention: twice as many spinning goroutines as the process
	// may run at once, until the test ends.
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

	// Most receivers answer at once; one call in five takes longer than
	// the first retry backoff.
	recv := newOnceReceiver(func() time.Duration {
		if mrand.IntN(5) == 0 {
			return 1200 * time.Millisecond
		}
		return time.Duration(mrand.IntN(5)) * time.Millisecond
	})
	fs := onceInstances(t, stores, recv)
	var msgs []string
	for round := range onceRounds {
		// Created on one instance, approved on the next once the user's
		// message went out (a request approved before does not need it).
		var ids []string
		for i := range onceRequests {
			c := pingClient
			if i%2 == 1 {
				c = pushClient
			}
			id := fs[i%len(fs)].create(t, c)
			ids = append(ids, id)
			msgs = append(msgs, "notice "+id, string(c.Mode)+" "+id)
		}
		for i, id := range ids {
			if err := onceDone(ctx, stores[0], id, false); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			fs[(i+1)%len(fs)].approve(t, id)
		}
		for _, id := range ids {
			if err := onceDone(ctx, stores[0], id, true); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
	}
	for !recv.settled() {
		if ctx.Err() != nil {
			t.Fatal("calls still under way")
		}
		time.Sleep(10 * time.Millisecond)
	}
	recv.check(t, msgs)
}

// TestDeliveryLeaseOfACrashResumedAtStart: with no other dispatcher on the
// store (SoleDispatcher), a lease found at the start was taken by a process
// that died mid-attempt: the message is sent at once, not when the lease
// runs out.
func TestDeliveryLeaseOfACrashResumedAtStart(t *testing.T) {
	recv := newOnceReceiver(func() time.Duration { return 0 })
	st := memory.New()
	f := newFixture(t, func(c *ciba.Config, d *ciba.Deps) {
		c.SoleDispatcher = true
		d.Store, d.Channel, d.Notifier, d.Now = st, recv, recv, time.Now
	})
	id := f.create(t, pingClient)
	f.approve(t, id)
	// As a crashed process left it: both attempts claimed, an hour's lease.
	ctx := context.Background()
	if _, err := st.UpdateRequest(ctx, id, func(r *ciba.AuthRequest) error {
		for _, d := range []*ciba.Delivery{&r.UserNotice, &r.ClientNotice} {
			d.Attempts, d.NextAttempt = 1, time.Now().Add(time.Hour)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	f.run(t)
	cx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := onceDone(cx, st, id, true); err != nil {
		t.Fatal(err)
	}
	recv.check(t, []string{"ping " + id})
}
