package redistest

import (
	"errors"
	"net"
	"runtime"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
)

// fakeTB records Skip and Fatal and ends the goroutine like the real ones.
type fakeTB struct {
	testing.TB
	mu            sync.Mutex
	skipped, died bool
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Skip(...any) {
	f.mu.Lock()
	f.skipped = true
	f.mu.Unlock()
	runtime.Goexit()
}
func (f *fakeTB) Fatal(...any) {
	f.mu.Lock()
	f.died = true
	f.mu.Unlock()
	runtime.Goexit()
}

// startFake runs Start with f in a goroutine of its own.
func startFake(f *fakeTB) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		Start(f)
	}()
	<-done
}

func TestMissingBinary(t *testing.T) {
	t.Setenv("REDIS_SERVER", "no-such-redis-server-binary")
	t.Setenv("CI", "")
	f := &fakeTB{TB: t}
	startFake(f)
	if !f.skipped || f.died {
		t.Fatalf("without a binary and without CI: skipped %v, failed %v; want skipped", f.skipped, f.died)
	}
	t.Setenv("CI", "true")
	f = &fakeTB{TB: t}
	startFake(f)
	if f.skipped || !f.died {
		t.Fatalf("without a binary on CI: skipped %v, failed %v; want failed", f.skipped, f.died)
	}
}

func TestStopKillRestart(t *testing.T) {
	ctx := t.Context()
	for _, persistent := range []bool{true, false} {
		var opts []Option
		if persistent {
			opts = append(opts, WithPersistence())
		}
		s := Start(t, opts...)
		c := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
		t.Cleanup(func() { _ = c.Close() })
		if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
		s.Kill()
		s.Kill() // harmless when not running
		if err := c.Ping(ctx).Err(); err == nil {
			t.Fatal("PING answered after Kill")
		}
		s.Restart()
		v, err := c.Get(ctx, "k").Result()
		switch {
		case persistent && (err != nil || v != "v"):
			t.Fatalf("persistent: GET after kill and restart = %q, %v; want v", v, err)
		case !persistent && !errors.Is(err, redis.Nil):
			t.Fatalf("not persistent: GET after kill and restart = %q, %v; want nothing", v, err)
		}
		s.Stop()
		s.Stop()
		s.Restart()
		if err := c.Ping(ctx).Err(); err != nil {
			t.Fatalf("PING after stop and restart: %v", err)
		}
	}
}

// TestStartRetriesATakenPort: when a program that does not reserve its
// ports binds the port Start chose before redis-server does, the server
// fails to start and Start tries again on a fresh port.
func TestStartRetriesATakenPort(t *testing.T) {
	occupied, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer occupied.Close()
	taken := occupied.Addr().(*net.TCPAddr).Port
	calls := 0
	s := Start(t, func(o *options) {
		o.freePort = func() (int, error) {
			calls++
			if calls == 1 {
				return taken, nil
			}
			return freePort()
		}
	})
	if s.port == taken || calls != 2 {
		t.Fatalf("the server runs on port %d after %d choices; want a second, fresh one (not %d)", s.port, calls, taken)
	}
	c := redis.NewClient(&redis.Options{Addr: s.Addr()})
	defer func() { _ = c.Close() }()
	if err := c.Ping(t.Context()).Err(); err != nil {
		t.Fatalf("PING: %v", err)
	}
}
