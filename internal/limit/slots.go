package limit

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// ErrBusy is the error of Slots.Run when every slot stayed taken for the
// whole wait: the check was not run.
var ErrBusy = errors.New("limit: every slot stayed taken for the whole wait")

// Slots bounds how many costly checks (bcrypt comparisons) run at once: a
// check takes one of n slots, waiting at most a fixed time for one, and is
// refused (ErrBusy) when none comes free, so that a flood of checks cannot
// take every processor, and a request waiting for one answers within a
// known time. It is safe for concurrent use; the nil *Slots runs every
// check at once.
type Slots struct {
	slots chan struct{}
	wait  time.Duration

	running atomic.Int64 // checks running now
	peak    atomic.Int64 // the most that ever ran at once
	runs    atomic.Int64 // checks run
	busy    atomic.Int64 // checks refused with ErrBusy
}

// NewSlots returns n slots (at least one) that a check waits at most wait
// for (at least a millisecond).
func NewSlots(n int, wait time.Duration) *Slots {
	return &Slots{slots: make(chan struct{}, max(n, 1)), wait: max(wait, time.Millisecond)}
}

// Wait is how long a check waits for a slot at most: a request that runs
// one check is answered at most Wait plus the check's own time after it
// asked for the slot.
func (s *Slots) Wait() time.Duration {
	if s == nil {
		return 0
	}
	return s.wait
}

// Run runs check in a slot, waiting at most Wait for one: ErrBusy when
// none came free, ctx's error (wrapped) when it ends first; check is then
// not run. A free slot is taken without a timer.
func (s *Slots) Run(ctx context.Context, check func()) error {
	if s == nil {
		check()
		return nil
	}
	select {
	case s.slots <- struct{}{}:
	default:
		t := time.NewTimer(s.wait)
		defer t.Stop()
		select {
		case s.slots <- struct{}{}:
		case <-t.C:
			s.busy.Add(1)
			return ErrBusy
		case <-ctx.Done():
			return fmt.Errorf("limit: waiting for a slot: %w", ctx.Err())
		}
	}
	defer func() { <-s.slots }()
	s.runs.Add(1)
	n := s.running.Add(1)
	defer s.running.Add(-1)
	for p := s.peak.Load(); n > p && !s.peak.CompareAndSwap(p, n); p = s.peak.Load() {
	}
	check()
	return nil
}

// Runs is the number of checks run so far.
func (s *Slots) Runs() int64 {
	if s == nil {
		return 0
	}
	return s.runs.Load()
}

// Running is the number of checks running now.
func (s *Slots) Running() int64 {
	if s == nil {
		return 0
	}
	return s.running.Load()
}

// Peak is the most checks that ever ran at once.
func (s *Slots) Peak() int64 {
	if s == nil {
		return 0
	}
	return s.peak.Load()
}

// Busy is the number of checks refused with ErrBusy so far.
func (s *Slots) Busy() int64 {
	if s == nil {
		return 0
	}
	return s.busy.Load()
}

// Cap is the number of slots.
func (s *Slots) Cap() int {
	if s == nil {
		return 0
	}
	return cap(s.slots)
}
