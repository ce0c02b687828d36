package wakeup

import "testing"

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
