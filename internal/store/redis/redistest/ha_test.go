package redistest

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestClusterFailsOver(t *testing.T) {
	c := StartCluster(t, 3, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	defer func() { _ = cc.Close() }()
	if err := cc.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	if err := cc.Wait(ctx, 1, time.Second).Err(); err != nil {
		t.Fatalf("WAIT: %v", err)
	}
	m, err := c.MasterOf(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	m.Kill()
	took := c.WaitFailover(ctx, m)
	next, err := c.MasterOf(ctx, "k")
	if err != nil || next == m {
		t.Fatalf("after the failover, the master of k is %v (%v)", next, err)
	}
	t.Logf("failed over from %s to %s in %v", m.Addr(), next.Addr(), took)
}

func TestSentinelFailsOver(t *testing.T) {
	s := StartSentinel(t, 2, 3)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m, err := s.Master(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m != s.Servers[0] {
		t.Fatalf("master %s, want %s", m.Addr(), s.Servers[0].Addr())
	}
	m.Kill()
	next, took := s.WaitFailover(ctx, m)
	t.Logf("failed over from %s to %s in %v", m.Addr(), next.Addr(), took)
}
