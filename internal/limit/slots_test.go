package limit_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/limit"
	"github.com/cibaproxy/cibaproxy/internal/limit/limittest"
)

// TestSlotsBoundAndBusy: 2 slots; 20 checks at once never run more than 2
// at a time; with both slots held a check waits the wait and is refused
// ErrBusy without running; a cancelled one returns ctx's error; released,
// the next check runs.
func TestSlotsBoundAndBusy(t *testing.T) {
	s := limit.NewSlots(2, 50*time.Millisecond)
	var wg sync.WaitGroup
	var mu sync.Mutex
	running, peak := 0, 0
	for range 20 {
		wg.Go(func() {
			_ = s.Run(t.Context(), func() {
				mu.Lock()
				running++
				peak = max(peak, running)
				mu.Unlock()
				time.Sleep(time.Millisecond) // the check's own work
				mu.Lock()
				running--
				mu.Unlock()
			})
		})
	}
	wg.Wait()
	if peak > 2 || s.Peak() > 2 || s.Runs()+s.Busy() != 20 {
		t.Fatalf("peak %d (counted %d), %d runs + %d busy; want at most 2, 20 in all", peak, s.Peak(), s.Runs(), s.Busy())
	}

	release := limittest.HoldSlots(t, s)
	ran := false
	start := time.Now()
	if err := s.Run(t.Context(), func() { ran = true }); !errors.Is(err, limit.ErrBusy) || ran || time.Since(start) < s.Wait() {
		t.Fatalf("slots held: err %v, ran %v after %v; want ErrBusy, not run, after %v", err, ran, time.Since(start), s.Wait())
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.Run(ctx, func() { ran = true }); !errors.Is(err, context.Canceled) || ran {
		t.Fatalf("cancelled: err %v, ran %v", err, ran)
	}
	release()
	if err := s.Run(t.Context(), func() { ran = true }); err != nil || !ran {
		t.Fatalf("released: err %v, ran %v", err, ran)
	}
}

// TestNilSlotsRunAtOnce: the nil *Slots bounds nothing.
func TestNilSlotsRunAtOnce(t *testing.T) {
	var s *limit.Slots
	ran := false
	if err := s.Run(t.Context(), func() { ran = true }); err != nil || !ran || s.Runs() != 0 {
		t.Fatalf("nil slots: err %v, ran %v", err, ran)
	}
}
