package httpapi

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// failingStore is a store whose SwapRecord fails on demand (Fail): the
// write of a user's passkeys or push subscriptions that follows a taken
// one-time token. It remembers the lifetime of each PutRecord by kind.
type failingStore struct {
	ciba.Store
	fails atomic.Int32

	mu   sync.Mutex
	ttls map[string][]time.Duration
}

func newFailingStore(st ciba.Store) *failingStore {
	return &failingStore{Store: st, ttls: map[string][]time.Duration{}}
}

// Fail makes the next n SwapRecords fail with ErrUnavailable.
func (f *failingStore) Fail(n int) { f.fails.Store(int32(n)) }

func (f *failingStore) SwapRecord(ctx context.Context, kind, key string, old, new []byte) (bool, error) {
	if f.fails.Add(-1) >= 0 {
		return false, fmt.Errorf("injected swap failure: %w", ciba.ErrUnavailable)
	}
	return f.Store.SwapRecord(ctx, kind, key, old, new)
}

func (f *failingStore) PutRecord(ctx context.Context, kind, key string, value []byte, ttl time.Duration) error {
	f.mu.Lock()
	f.ttls[kind] = append(f.ttls[kind], ttl)
	f.mu.Unlock()
	return f.Store.PutRecord(ctx, kind, key, value, ttl)
}

// puts returns the lifetimes of the PutRecords of kind so far.
func (f *failingStore) puts(kind string) []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Duration(nil), f.ttls[kind]...)
}
