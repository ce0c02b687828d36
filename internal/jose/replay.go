package jose

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// ErrReplay is wrapped by a Replay's error for a key it has seen before.
var ErrReplay = errors.New("jose: already used")

// Replay remembers the tokens that were used, so each is used once (the jti
// of RFC 7519 §4.1.7; CIBA §7.1.1 for signed requests, RFC 7523 §3 for
// client assertions).
//
// Seen records key until the given time and returns nil the first time; for
// a key already recorded and not yet expired it returns an error wrapping
// ErrReplay. Any other error means the record could not be made, and the
// token must be refused all the same. Seen must be atomic across every
// instance that verifies tokens for the same issuer: two concurrent calls
// with one key never both succeed.
type Replay interface {
	Seen(ctx context.Context, key string, until time.Time) error
}

// StoreReplay is a Replay on the records of a ciba.Store, so replays are
// caught across all instances that share the store.
type StoreReplay struct {
	// Now is the clock that turns the until time of Seen into the record's
	// TTL; nil means time.Now. Use the clock of the verifiers.
	Now func() time.Time

	store ciba.Store
	kind  string
}

// NewStoreReplay returns a Replay that records keys with store.PutRecord
// under the record kind kind (for example "jti"). A key that is already
// present (ciba.ErrExists) is a replay.
func NewStoreReplay(store ciba.Store, kind string) *StoreReplay {
	return &StoreReplay{store: store, kind: kind}
}

// minReplayTTL is the shortest lifetime of a replay record: a record with a
// zero TTL would live forever.
const minReplayTTL = time.Second

// Seen implements Replay.
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
		return fmt.Errorf("%w: %s", ErrReplay, key)
	default:
		return fmt.Errorf("jose: recording %s: %w", key, err)
	}
}

// replayKey is the record key of token jti of client (or issuer) iss for
// the given purpose: fixed length, whatever characters the two values hold,
// and unambiguous (each value is length-prefixed before hashing).
func replayKey(purpose, iss, jti string) string {
	h := sha256.New()
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(iss)))
	h.Write(n[:])
	h.Write([]byte(iss))
	h.Write([]byte(jti))
	return purpose + ":" + hex.EncodeToString(h.Sum(nil))
}

// replayError turns the error of Replay.Seen into a protocol error of check c.
func (c check) replayError(jti string, err error) *ciba.Error {
	switch {
	case errors.Is(err, ErrReplay):
		e := c.fail("jti %q was already used", clip(jti))
		e.Err = err
		return e
	case errors.Is(err, ciba.ErrUnavailable):
		return &ciba.Error{Code: ciba.CodeTemporarilyUnavailable, Description: c.what + ": the replay check is unavailable; try again later", Err: err}
	default:
		return &ciba.Error{Code: ciba.CodeServerError, Description: "internal error", Err: err}
	}
}
