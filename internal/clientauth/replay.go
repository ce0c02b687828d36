package clientauth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/jose"
)

// Records is the one store operation a StoreReplay needs (ciba.Store has
// it): PutRecord creates the record kind/key for ttl, and fails with
// ciba.ErrExists when it is already there, ciba.ErrUnavailable when the
// store cannot be reached.
type Records interface {
	PutRecord(ctx context.Context, kind, key string, value []byte, ttl time.Duration) error
}

// StoreReplay is a jose.Replay on the records of a store, so replays of
// client assertions and request objects are caught across all instances
// that share the store.
type StoreReplay struct {
	// Now is the clock that turns the until time of Seen into the record's
	// TTL; nil means time.Now. Use the clock of the verifiers.
	Now func() time.Time

	store Records
	kind  string
}

// NewStoreReplay returns a Replay that records keys with store.PutRecord
// under the record kind kind (for example "jti"). A key that is already
// present (ciba.ErrExists) is a replay (jose.ErrReplay).
func NewStoreReplay(store Records, kind string) *StoreReplay {
	return &StoreReplay{store: store, kind: kind}
}

// minReplayTTL is the shortest lifetime of a replay record: a record with a
// zero TTL would live forever.
const minReplayTTL = time.Second

// Seen implements jose.Replay. An error other than a replay wraps the
// store's, so tokenError tells an unavailable store (ciba.ErrUnavailable)
// from another failure.
func (r *StoreReplay) Seen(ctx context.Context, key string, until time.Time) error {
	now := time.Now
	if r.Now != nil {
		now = r.Now
	}
	ttl := max(until.Sub(now()), minReplayTTL)
	err := r.store.PutRecord(ctx, r.kind, key, []byte{1}, ttl)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ciba.ErrExists):
		return fmt.Errorf("%w: %s", jose.ErrReplay, key)
	default:
		return fmt.Errorf("clientauth: recording %s: %w", key, err)
	}
}

// ProofReplay is a dpop.Replay on the records of a store, so a DPoP proof
// is accepted once across all instances that share the store (RFC 9449
// §11.1). It records as a StoreReplay does.
type ProofReplay struct {
	records *StoreReplay
}

// NewProofReplay returns a dpop.Replay that records keys with
// store.PutRecord under the record kind kind (for example "dpop"); now is
// the verifier's clock (nil means time.Now).
func NewProofReplay(store Records, kind string, now func() time.Time) ProofReplay {
	r := NewStoreReplay(store, kind)
	r.Now = now
	return ProofReplay{records: r}
}

// Seen implements dpop.Replay: true for a key already recorded, an error
// wrapping the store's when the record cannot be made.
func (p ProofReplay) Seen(ctx context.Context, key string, until time.Time) (bool, error) {
	err := p.records.Seen(ctx, key, until)
	switch {
	case err == nil:
		return false, nil
	case errors.Is(err, jose.ErrReplay):
		return true, nil
	default:
		return false, err
	}
}
