package wakeup

import (
	"sync/atomic"
	"testing"
)

func TestHub(t *testing.T) {
	var h Hub
	a, stopA := h.Subscribe("r1")
	b, stopB := h.Subscribe("r1")
	c, stopC := h.Subscribe("r2")
	defer stopC()
	h.Wake("r1")
	h.Wake("r1") // coalesces: never blocks
	for name, ch := range map[string]<-chan struct{}{"a": a, "b": b} {
		select {
		case <-ch:
		default:
			t.Fatalf("subscriber %s of r1 was not woken", name)
		}
	}
	select {
	case <-c:
		t.Fatal("the subscriber of r2 was woken by a change of r1")
	default:
	}
	stopA()
	stopA() // a second stop is harmless
	h.Wake("r1")
	select {
	case <-a:
		t.Fatal("a stopped subscriber was woken")
	default:
	}
	<-b
	stopB()
	if n := h.Len(); n != 1 {
		t.Fatalf("%d requests with subscribers, want 1 (r2)", n)
	}
	h.WakeAll()
	select {
	case <-c:
	default:
		t.Fatal("WakeAll did not wake r2's subscriber")
	}
}

// TestSubscribeFunc: a function subscriber is called on each Wake of its
// id and on WakeAll, not for other ids, and no longer once stopped.
func TestSubscribeFunc(t *testing.T) {
	var h Hub
	var calls atomic.Int32
	stop := h.SubscribeFunc("a", func() { calls.Add(1) })
	h.Wake("b")
	h.Wake("a")
	h.WakeAll()
	if n := calls.Load(); n != 2 {
		t.Fatalf("called %d times, want 2", n)
	}
	stop()
	stop()
	h.Wake("a")
	if n := calls.Load(); n != 2 || h.Len() != 0 {
		t.Fatalf("called %d times after stop (want 2), %d ids subscribed", n, h.Len())
	}
}
