package redisstore

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/store/redis/redistest"
	"github.com/cibaproxy/cibaproxy/internal/store/storetest"
)

// openCfg opens a store with cfg and closes it when the test ends.
func openCfg(t *testing.T, cfg Config) *Store {
	t.Helper()
	s, err := Open(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestClusterConformance runs the store contract on a Redis Cluster of
// three masters with a replica each: every script's keys share a slot, the
// due index and ListRequests span the masters, and the change channel
// reaches a store whose pub/sub connection is on another node.
func TestClusterConformance(t *testing.T) {
	t.Parallel() // see TestClusterFailoverLosesNothing
	c := redistest.StartCluster(t, 3, 1)
	storetest.Run(t, func(t *testing.T) ciba.Store {
		// The contract, not the wait's deadline, is under test here (that is
		// TestWaitReplicas): a replica on a machine short of CPU can take
		// longer than the default 500 ms to confirm, which would fail a
		// write the contract expects to succeed.
		return openCfg(t, Config{Addrs: c.Addrs(), KeyPrefix: newPrefix(), WaitReplicas: 1, WaitTimeout: 5 * time.Second})
	})
}

// ledger is what a failover test's clients were told: each request whose
// creation, approval or redemption was acknowledged, and how many times a
// redemption succeeded.
type ledger struct {
	mu       sync.Mutex
	created  []string
	approved map[string]bool
	redeemed map[string]int
	killedAt time.Time
}

// note records an acknowledged step.
func (l *ledger) note(f func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f()
}

// failoverLoad runs workers that create, approve and redeem requests
// through s, kills what kill kills once some requests were redeemed, and
// stops once recovered returned (the topology failed over) and afterWrites
// more redemptions were acknowledged (or a time bound is reached). Every error a worker sees must
// wrap ciba.ErrUnavailable (the client would hear temporarily_unavailable),
// or be invalid_grant for a redemption retried after one in doubt. Then it
// checks that nothing acknowledged was lost and nothing redeemed twice, and
// logs the time to recover.
func failoverLoad(t *testing.T, s *Store, kill, recovered func()) {
	const (
		workers     = 8
		beforeKill  = 100
		afterWrites = 100
		maxRequests = 20000
		pause       = 20 * time.Millisecond
	)
	ctx, cancel := context.WithTimeout(t.Context(), 45*time.Second)
	defer cancel()
	tt := t
	l := &ledger{approved: map[string]bool{}, redeemed: map[string]int{}}
	var started, redeemedN, afterN atomic.Int64
	killed, healed := make(chan struct{}), make(chan struct{})
	var killOnce sync.Once
	var healedAfter time.Duration
	unexpected := func(what string, err error) {
		// Give the failover time rather than spin through the bound.
		t := time.NewTimer(pause)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
		var pe *ciba.Error
		if errors.Is(err, ciba.ErrUnavailable) || (errors.As(err, &pe) && pe.Code == ciba.CodeInvalidGrant) {
			return
		}
		tt.Errorf("%s: %v (want an error wrapping ErrUnavailable)", what, err)
	}
	redeem := func(id string) error {
		_, err := s.UpdateRequest(ctx, id, func(cur *ciba.AuthRequest) error {
			_, err := cur.Redeem(time.Now())
			return err
		})
		return err
	}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil && started.Add(1) <= maxRequests && afterN.Load() < afterWrites {
				r := storetest.NewRequest()
				if err := s.CreateRequest(ctx, r); err != nil {
					unexpected("create", err)
					continue
				}
				l.note(func() { l.created = append(l.created, r.ID) })
				_, err := s.UpdateRequest(ctx, r.ID, func(cur *ciba.AuthRequest) error {
					now := time.Now()
					return cur.Approve(now, now, []byte("sealed"))
				})
				if err != nil {
					unexpected("approve", err)
					continue
				}
				l.note(func() { l.approved[r.ID] = true })
				if err := redeem(r.ID); err != nil {
					unexpected("redeem", err)
					continue
				}
				l.note(func() { l.redeemed[r.ID]++ })
				select {
				case <-healed:
					afterN.Add(1)
				case <-killed:
				default:
					if redeemedN.Add(1) == beforeKill {
						killOnce.Do(func() {
							l.mu.Lock()
							l.killedAt = time.Now()
							l.mu.Unlock()
							kill()
							close(killed)
							go func() {
								recovered()
								healedAfter = time.Since(l.killedAt)
								close(healed)
							}()
						})
					}
				}
			}
		})
	}
	wg.Wait()
	select {
	case <-healed:
	default:
		t.Fatalf("the load ended before the failover was over (%d redeemed before the kill)", redeemedN.Load())
	}
	if afterN.Load() < afterWrites {
		t.Fatalf("only %d redemptions acknowledged after the kill, want %d", afterN.Load(), afterWrites)
	}
	t.Logf("%d requests created, %d redeemed; failed over %v after the kill",
		len(l.created), len(l.redeemed), healedAfter.Round(time.Millisecond))
	// Everything acknowledged is there, and a redeemed request is never
	// redeemable again.
	vctx, vcancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer vcancel()
	for _, id := range l.created {
		r, err := s.GetRequest(vctx, id)
		for errors.Is(err, ciba.ErrUnavailable) && vctx.Err() == nil {
			// The client may lag behind the failover a moment more.
			r, err = s.GetRequest(vctx, id)
		}
		if err != nil {
			t.Errorf("acknowledged request %s: %v", id, err)
			continue
		}
		if l.approved[id] && r.Status != ciba.StatusApproved && r.Status != ciba.StatusRedeemed {
			t.Errorf("approved request %s is %s", id, r.Status)
		}
		if n := l.redeemed[id]; n > 0 {
			if n > 1 {
				t.Errorf("request %s redeemed %d times", id, n)
			}
			if r.Status != ciba.StatusRedeemed {
				t.Errorf("redeemed request %s is %s after the failover", id, r.Status)
			}
		}
	}
	for id, n := range l.redeemed {
		if n != 1 {
			continue
		}
		var pe *ciba.Error
		if err := redeem(id); !errors.As(err, &pe) || pe.Code != ciba.CodeInvalidGrant {
			t.Errorf("redeeming %s again after the failover: %v, want invalid_grant", id, err)
		}
	}
}

// TestSentinelFailoverLosesNothing kills the master of a Sentinel set
// (two replicas, three Sentinels) under create-approve-redeem load with
// WaitReplicas 1: the store follows the new master without a restart, and
// every acknowledged write survives.
func TestSentinelFailoverLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("a failover under load (make test runs it; -short is make test-quick)")
	}
	t.Parallel() // see TestClusterFailoverLosesNothing
	sn := redistest.StartSentinel(t, 2, 3)
	s := openCfg(t, Config{Addrs: sn.Addrs(), MasterName: sn.Name, KeyPrefix: newPrefix(),
		Timeout: time.Second, WaitReplicas: 1})
	var old *redistest.Server
	failoverLoad(t, s, func() {
		var err error
		if old, err = sn.Master(t.Context()); err != nil {
			t.Errorf("find the master: %v", err)
			return
		}
		old.Kill()
	}, func() { sn.WaitFailover(t.Context(), old) })
}

// TestClusterFailoverLosesNothing kills a master of a Redis Cluster under
// the same load.
//
// The three tests of a topology run in parallel with one another, after
// the package's other tests (go test runs parallel tests once the
// sequential ones are done): each has servers, ports and a key prefix of
// its own, and most of their time is spent waiting on a failover or on
// the topology to form, not on the CPU.
func TestClusterFailoverLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("a failover under load, 25 s of waiting (make test runs it; -short is make test-quick)")
	}
	t.Parallel()
	c := redistest.StartCluster(t, 3, 1)
	s := openCfg(t, Config{Addrs: c.Addrs(), KeyPrefix: newPrefix(), Timeout: time.Second, WaitReplicas: 1})
	failoverLoad(t, s, func() { c.Nodes[0].Kill() }, func() { c.WaitFailover(t.Context(), c.Nodes[0]) })
}

// TestWaitReplicas: with WaitReplicas 1 and no replica, acknowledged writes
// fail with ErrUnavailable (in doubt) and Ready says why; once a replica
// follows the master, they succeed.
func TestWaitReplicas(t *testing.T) {
	srv := redistest.Start(t, redistest.WithArgs("--repl-diskless-sync-delay", "0"))
	prefix := newPrefix()
	s := openCfg(t, Config{Addrs: []string{srv.Addr()}, KeyPrefix: prefix, WaitReplicas: 1, WaitTimeout: 20 * time.Millisecond})
	ctx := t.Context()
	r := storetest.NewRequest()
	if err := openCfg(t, Config{Addrs: []string{srv.Addr()}, KeyPrefix: prefix}).CreateRequest(ctx, r); err != nil {
		t.Fatalf("CreateRequest without waiting: %v", err)
	}
	if err := s.CreateRequest(ctx, storetest.NewRequest()); !errors.Is(err, ciba.ErrUnavailable) {
		t.Fatalf("CreateRequest without a replica: %v, want ErrUnavailable", err)
	}
	if err := s.PutRecord(ctx, "k", "a", []byte("v"), time.Minute); !errors.Is(err, ciba.ErrUnavailable) {
		t.Fatalf("PutRecord without a replica: %v, want ErrUnavailable", err)
	}
	if _, err := s.TakeRecord(ctx, "k", "a"); !errors.Is(err, ciba.ErrUnavailable) {
		t.Fatalf("TakeRecord without a replica: %v, want ErrUnavailable", err)
	}
	if _, err := s.UpdateRequest(ctx, r.ID, func(*ciba.AuthRequest) error { return nil }); !errors.Is(err, ciba.ErrUnavailable) {
		t.Fatalf("UpdateRequest without a replica: %v, want ErrUnavailable", err)
	}
	if err := s.Ready(ctx); !errors.Is(err, ciba.ErrUnavailable) || !strings.Contains(err.Error(), "0 replicas in sync") {
		t.Fatalf("Ready without a replica: %v", err)
	}

	redistest.Start(t, redistest.WithArgs("--replicaof", "127.0.0.1", strconv.Itoa(port(t, srv.Addr()))))
	// A long timeout from here: what is under test is that writes succeed
	// once a replica follows (the deadline was tested above), and under a
	// full parallel test run the replica's first acknowledgement has taken
	// more than the default 500 ms.
	s = openCfg(t, Config{Addrs: []string{srv.Addr()}, KeyPrefix: prefix, WaitReplicas: 1, WaitTimeout: 5 * time.Second})
	deadline := time.Now().Add(20 * time.Second)
	for s.Ready(ctx) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("Ready with a replica: %v", s.Ready(ctx))
		}
		time.Sleep(10 * time.Millisecond)
	}
	r2 := storetest.NewRequest()
	if err := s.CreateRequest(ctx, r2); err != nil {
		t.Fatalf("CreateRequest with a replica: %v", err)
	}
	if _, err := s.UpdateRequest(ctx, r2.ID, func(*ciba.AuthRequest) error { return nil }); err != nil {
		t.Fatalf("UpdateRequest with a replica: %v", err)
	}
	if err := s.PutRecord(ctx, "k", "b", []byte("v"), time.Minute); err != nil {
		t.Fatalf("PutRecord with a replica: %v", err)
	}
	if v, err := s.TakeRecord(ctx, "k", "b"); err != nil || string(v) != "v" {
		t.Fatalf("TakeRecord with a replica: %q, %v", v, err)
	}
}

// port returns the port of addr.
func port(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
