// Package limittest helps the tests of the packages that run checks in
// limit.Slots.
package limittest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/limit"
)

// HoldSlots takes every slot of s, each with a check that runs until
// release is called (or the test ends), and returns once they all run: a
// check asked for meanwhile waits, and gets ErrBusy after s.Wait(). The
// holding checks count in s's Runs and Peak. release is idempotent and
// returns once every slot is free again.
func HoldSlots(t testing.TB, s *limit.Slots) (release func()) {
	t.Helper()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range s.Cap() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A background context: the wait ends only by a free slot.
			if err := s.Run(context.Background(), func() { <-stop }); err != nil {
				t.Errorf("holding a slot: %v", err)
			}
		}()
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			close(stop)
			wg.Wait()
		})
	}
	t.Cleanup(release)
	deadline := time.Now().Add(10 * time.Second)
	for s.Running() < int64(s.Cap()) {
		if time.Now().After(deadline) {
			release()
			t.Fatalf("only %d of %d slots taken after 10 s", s.Running(), s.Cap())
		}
		time.Sleep(time.Millisecond)
	}
	return release
}
