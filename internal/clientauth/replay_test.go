package clientauth

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/jose"
	"github.com/cibaproxy/cibaproxy/internal/store/memory"
)

// putStore is a Records with a clock.
type putStore struct {
	mu      sync.Mutex
	now     time.Time
	records map[string]time.Time // kind/key → expiry
	ttls    []time.Duration
	err     error
}

func (s *putStore) PutRecord(_ context.Context, kind, key string, _ []byte, ttl time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	s.ttls = append(s.ttls, ttl)
	k := kind + "/" + key
	if exp, ok := s.records[k]; ok && (exp.IsZero() || s.now.Before(exp)) {
		return ciba.ErrExists
	}
	var exp time.Time
	if ttl > 0 {
		exp = s.now.Add(ttl)
	}
	s.records[k] = exp
	return nil
}

func TestStoreReplay(t *testing.T) {
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	st := &putStore{now: start, records: map[string]time.Time{}}
	r := NewStoreReplay(st, "jti")
	r.Now = func() time.Time { return st.now }
	until := start.Add(5 * time.Minute)

	if err := r.Seen(t.Context(), "k", until); err != nil {
		t.Fatalf("first use: %v", err)
	}
	if err := r.Seen(t.Context(), "k", until); !errors.Is(err, jose.ErrReplay) {
		t.Fatalf("second use: err = %v, want ErrReplay", err)
	}
	if st.ttls[0] != 5*time.Minute {
		t.Fatalf("ttl = %s, want 5m", st.ttls[0])
	}
	t.Run("an until in the past still records for a moment, never forever", func(t *testing.T) {
		if err := r.Seen(t.Context(), "old", start.Add(-time.Hour)); err != nil {
			t.Fatal(err)
		}
		if got := st.ttls[len(st.ttls)-1]; got <= 0 {
			t.Fatalf("ttl = %s: a zero TTL would keep the record forever", got)
		}
	})
	t.Run("after the record expires the key may be used again", func(t *testing.T) {
		st.now = until.Add(time.Second)
		if err := r.Seen(t.Context(), "k", st.now.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a store that is down is no replay, and keeps its cause", func(t *testing.T) {
		st.err = ciba.ErrUnavailable
		defer func() { st.err = nil }()
		err := r.Seen(t.Context(), "new", until)
		if errors.Is(err, jose.ErrReplay) || !errors.Is(err, ciba.ErrUnavailable) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestStoreReplayMemoryStore(t *testing.T) {
	st := memory.New()
	defer st.Close()
	r := NewStoreReplay(st, "jti")
	until := time.Now().Add(time.Minute)
	var ok atomic.Int32
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			switch err := r.Seen(t.Context(), "same-key", until); {
			case err == nil:
				ok.Add(1)
			case !errors.Is(err, jose.ErrReplay):
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 1 {
		t.Fatalf("%d of 32 concurrent uses of one jti succeeded, want exactly 1", ok.Load())
	}
}
