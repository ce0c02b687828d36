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
	m  map[string][]chan struct{}
}

// Subscribe returns a channel that receives a value after each Wake of id
// (or WakeAll), and a function to stop listening, which may be called more
// than once. The channel holds one value: wake-ups while the subscriber is
// not reading coalesce, and a slow subscriber never blocks a waker. The
// channel is never closed.
func (h *Hub) Subscribe(id string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	h.mu.Lock()
	if h.m == nil {
		h.m = make(map[string][]chan struct{})
	}
	h.m[id] = append(h.m[id], ch)
	h.mu.Unlock()
	var once sync.Once
	return ch, func() { once.Do(func() { h.remove(id, ch) }) }
}

// remove unregisters ch for request id, if registered.
func (h *Hub) remove(id string, ch chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	list := h.m[id]
	if i := slices.Index(list, ch); i >= 0 {
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
	for _, ch := range h.m[id] {
		notify(ch)
	}
	h.mu.Unlock()
}

// WakeAll wakes every subscriber, as when changes may have been missed.
func (h *Hub) WakeAll() {
	h.mu.Lock()
	for _, list := range h.m {
		for _, ch := range list {
			notify(ch)
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
