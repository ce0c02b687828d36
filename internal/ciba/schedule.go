package ciba

import (
	"sync"
	"time"
)

// scheduler is the set of requests the dispatcher must look at, with the
// earliest time each needs a look. The parts that change a request
// (Decisions, Relayer, Acceptor) hold it to ask for a look.
type scheduler struct {
	mu  sync.Mutex
	due map[string]time.Time
	// kick wakes the dispatcher's loop (Dispatcher.Run).
	kick chan struct{}
}

// newScheduler returns an empty schedule.
func newScheduler() *scheduler {
	return &scheduler{due: map[string]time.Time{}, kick: make(chan struct{}, 1)}
}

// wake asks the dispatcher to look at its schedule now.
func (q *scheduler) wake() {
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

// schedule asks the dispatcher to look at request id at time at.
func (q *scheduler) schedule(id string, at time.Time) {
	q.add(id, at)
	q.wake()
}

// add records that request id needs a look at at, unless an earlier look
// is already scheduled; it does not wake the dispatcher.
func (q *scheduler) add(id string, at time.Time) {
	q.mu.Lock()
	if cur, ok := q.due[id]; !ok || at.Before(cur) {
		q.due[id] = at
	}
	q.mu.Unlock()
}

// take removes and returns the ids due at now.
func (q *scheduler) take(now time.Time) (ids []string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for id, at := range q.due {
		if !at.After(now) {
			ids = append(ids, id)
			delete(q.due, id)
		}
	}
	return ids
}

// next returns the earliest scheduled time, zero when nothing is scheduled.
func (q *scheduler) next() (next time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, at := range q.due {
		if next.IsZero() || at.Before(next) {
			next = at
		}
	}
	return next
}
