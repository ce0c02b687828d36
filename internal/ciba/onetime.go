package ciba

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// OneTimeRecords is the part of a [Store] a one-time token kept as a
// record needs: take it, and put it back.
type OneTimeRecords interface {
	TakeRecord(ctx context.Context, kind, key string) ([]byte, error)
	PutRecord(ctx context.Context, kind, key string, value []byte, ttl time.Duration) error
}

// putBackTimeout bounds the write that puts a taken record back, which
// runs even when the request that took it has gone.
const putBackTimeout = 5 * time.Second

// UseTaken spends a one-time token whose record value the caller has just
// taken (TakeRecord: of concurrent callers exactly one gets it, the others
// ErrNotFound) on use, the write the token was for. When use fails (a store
// error), the record is put back under kind and key for what is left of its
// lifetime (until expires, as seen at now), so that the same token can be
// tried again instead of being spent with nothing to show for it. use's
// error is returned, joined with the put-back's if that failed too (the
// token is then lost).
//
// Why take first and put back, rather than write first and take after:
// the store has no transaction over two records (the token and what it
// writes), so "write, then take" would let every one of a burst of posts
// of one token write before any of them took it. Taking first keeps the
// one-time property exact: only the caller holding the taken record
// writes. Putting back (PutRecord, which only creates) cannot revive a
// token that was used: only the caller whose write failed puts it back,
// never for longer than it had. Not covered: a write that failed in doubt
// (a commit that lands after reporting an error) can leave both what it
// wrote and a live token.
func UseTaken(ctx context.Context, rs OneTimeRecords, kind, key string, value []byte, expires, now time.Time, use func() error) error {
	uerr := use()
	if uerr == nil {
		return nil
	}
	left := expires.Sub(now)
	if left <= 0 {
		return uerr
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), putBackTimeout)
	defer cancel()
	if err := rs.PutRecord(pctx, kind, key, value, left); err != nil {
		return errors.Join(uerr, fmt.Errorf("put the one-time %s record back: %w", kind, err))
	}
	return uerr
}
