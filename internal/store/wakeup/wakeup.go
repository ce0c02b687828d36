// Package wakeup keeps a store's subscriptions to changes of requests: per
// request id, the channels to wake when it changes. The memory store wakes
// them on its own writes, the Redis store on the change messages it hears.
package wakeup

import (
	"slices"
	"sync"
)

// Hub holds the subscribers of requests. The zero Hub is ready for use; a
// Hub is safe for concurrent use.
type Hub struct {
	mu sync.Mutex
	m  map[string][]*subscriber
}

// subscriber is one subscription: a channel, or a function to call.
type subscriber struct {
	ch chan struct{}
	f  func()
}

// wake notifies s: a non-blocking send, or a call of its function.
func (s *subscriber) wake() {
	if s.f != nil {
		s.f()
		return
	}
	notify(s.ch)
}

// Subscribe returns a channel that receives a value after each Wake of id
// (or WakeAll), and a function to stop listening, which may be called more
// than once. The channel holds one value: wake-ups while the subscriber is
// not reading coalesce, and a slow subscriber never blocks a waker. The
// channel is never closed.
func (h *Hub) Subscribe(id string) (<-chan struct{}, func()) {
	sub := &subscriber{ch: make(chan struct{}, 1)}
	h.add(id, sub)
	var once sync.Once
	return sub.ch, func() { once.Do(func() { h.remove(id, sub) }) }
}

// SubscribeFunc calls f after each Wake of id (or WakeAll) until the
// returned function, which may be called more than once, stops it. f runs
// on the waker's goroutine with the Hub locked: it must return at once,
// without blocking and without calling the Hub (start a goroutine for any
// work). It costs no goroutine and no channel while nothing happens, for
// subscribers that wait in large numbers (parked long polls).
func (h *Hub) SubscribeFunc(id string, f func()) func() {
	sub := &subscriber{f: f}
	h.add(id, sub)
	var once sync.Once
	return func() { once.Do(func() { h.remove(id, sub) }) }
}

// add registers sub for request id.
func (h *Hub) add(id string, sub *subscriber) {
	h.mu.Lock()
	if h.m == nil {
		h.m = make(map[string][]*subscriber)
	}
	h.m[id] = append(h.m[id], sub)
	h.mu.Unlock()
}

// remove unregisters sub for request id, if registered.
func (h *Hub) remove(id string, sub *subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	list := h.m[id]
	if i := slices.Index(list, sub); i >= 0 {
		list = slices.Delete(list, i, i+1)
	}
	if len(list) == 0 {
		delete(h.m, id)
	} else {
		h.m[id] = list
	}
}

// Wake makes a non-blocking send to every subscriber of request id.
func (h *Hub) Wake(id string) {
	h.mu.Lock()
	for _, sub := range h.m[id] {
		sub.wake()
	}
	h.mu.Unlock()
}

// WakeAll wakes every subscriber, as when changes may have been missed.
func (h *Hub) WakeAll() {
	h.mu.Lock()
	for _, list := range h.m {
		for _, sub := range list {
			sub.wake()
		}
	}
	h.mu.Unlock()
}

// Len returns how many requests have subscribers.
func (h *Hub) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.m)
}

// notify sends to ch unless it already holds a value.
func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
