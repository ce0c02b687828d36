package jose

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// Replay remembers the tokens that were used, so each is used once (the jti
// of RFC 7519 §4.1.7; CIBA §7.1.1 for signed requests, RFC 7523 §3 for
// client assertions).
//
// Seen records key until the given time and returns nil the first time; for
// a key already recorded and not yet expired it returns an error wrapping
// ErrReplay. Any other error means the record could not be made, and the
// token is refused all the same (an ErrReplayCheck error wrapping it, so
// the caller can tell a temporary failure by its own sentinels). Seen must
// be atomic across every instance that verifies tokens for the same issuer:
// two concurrent calls with one key never both succeed.
type Replay interface {
	Seen(ctx context.Context, key string, until time.Time) error
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

// replayError turns the error of Replay.Seen into the error of check c:
// ErrReplay for a jti already used, ErrReplayCheck wrapping any other.
func (c check) replayError(jti string, err error) *ValidationError {
	if errors.Is(err, ErrReplay) {
		return &ValidationError{Token: c.what, Kind: ErrReplay, Field: "jti", Reason: fmt.Sprintf("jti %q was already used", clip(jti)), Err: err}
	}
	return &ValidationError{Token: c.what, Kind: ErrReplayCheck, Field: "jti", Reason: "the replay check could not be made", Err: err}
}
