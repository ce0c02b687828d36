package storetest

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// swap calls SwapRecord and fails the test on an error.
func swap(t *testing.T, s ciba.Store, kind, key string, old, new []byte) bool {
	t.Helper()
	ok, err := s.SwapRecord(t.Context(), kind, key, old, new)
	if err != nil {
		t.Fatalf("SwapRecord(%s, %s, %q, %q): %v", kind, key, old, new, err)
	}
	return ok
}

func testSwap(t *testing.T, s ciba.Store) {
	const kind = "passkeys"
	if swap(t, s, kind, "alice", []byte("x"), []byte("y")) {
		t.Fatal("SwapRecord over an absent record with a non-nil old swapped")
	}
	if !swap(t, s, kind, "alice", nil, []byte("one")) {
		t.Fatal("SwapRecord(nil → one) of an absent record did not swap")
	}
	wantRecord(t, s, kind, "alice", "one")
	if swap(t, s, kind, "alice", nil, []byte("two")) {
		t.Fatal("SwapRecord(nil → two) of a present record swapped")
	}
	if swap(t, s, kind, "alice", []byte("other"), []byte("two")) {
		t.Fatal("SwapRecord(other → two) of a record holding one swapped")
	}
	wantRecord(t, s, kind, "alice", "one")
	if !swap(t, s, kind, "alice", []byte("one"), []byte("two")) {
		t.Fatal("SwapRecord(one → two) did not swap")
	}
	wantRecord(t, s, kind, "alice", "two")
	if !swap(t, s, kind, "alice", []byte("two"), []byte{}) {
		t.Fatal("SwapRecord(two → empty) did not swap")
	}
	wantRecord(t, s, kind, "alice", "")
	if !swap(t, s, kind, "alice", []byte{}, nil) {
		t.Fatal("SwapRecord(empty → nil) did not swap")
	}
	_, err := s.GetRecord(t.Context(), kind, "alice")
	wantErr(t, "GetRecord after SwapRecord deleted it", err, ciba.ErrNotFound)
	if swap(t, s, kind, "alice", []byte("two"), nil) {
		t.Fatal("SwapRecord of a deleted record swapped")
	}
	// Other kinds and keys are untouched, and PutRecord sees a swapped-in
	// record as present.
	if !swap(t, s, kind, "bob", nil, []byte("b")) {
		t.Fatal("SwapRecord(nil → b) did not swap")
	}
	wantErr(t, "PutRecord over a swapped-in record", s.PutRecord(t.Context(), kind, "bob", []byte("c"), 0), ciba.ErrExists)
	_, err = s.GetRecord(t.Context(), "other", "bob")
	wantErr(t, "GetRecord of another kind", err, ciba.ErrNotFound)
}

func testSwapConcurrent(t *testing.T, s ciba.Store) {
	const kind = "passkeys"
	if !swap(t, s, kind, "alice", nil, []byte("0")) {
		t.Fatal("first swap did not swap")
	}
	var wg sync.WaitGroup
	var won atomic.Int32
	for i := range 50 {
		wg.Go(func() {
			ok, err := s.SwapRecord(context.Background(), kind, "alice", []byte("0"), []byte{byte('A' + i%26)})
			if err != nil {
				t.Errorf("SwapRecord: %v", err)
			}
			if ok {
				won.Add(1)
			}
		})
	}
	wg.Wait()
	if n := won.Load(); n != 1 {
		t.Fatalf("%d of 50 swappers of the same value won, want 1", n)
	}
}

func testSwapExpired(t *testing.T, s ciba.Store) {
	const kind = "enrol"
	if err := s.PutRecord(t.Context(), kind, "a", []byte("old"), 30*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := s.GetRecord(t.Context(), kind, "a"); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the record did not expire")
		}
		time.Sleep(10 * time.Millisecond) // records expire by the clock
	}
	if swap(t, s, kind, "a", []byte("old"), []byte("new")) {
		t.Fatal("SwapRecord over an expired record with its old value swapped")
	}
	if !swap(t, s, kind, "a", nil, []byte("new")) {
		t.Fatal("SwapRecord(nil → new) over an expired record did not swap")
	}
	wantRecord(t, s, kind, "a", "new")
	time.Sleep(60 * time.Millisecond) // past the old lifetime: what SwapRecord wrote has none
	wantRecord(t, s, kind, "a", "new")
}
