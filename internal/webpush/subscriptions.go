package webpush

import (
	"context"
	"crypto/ecdh"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// Subscription is one browser's push subscription (the Push API's
// PushSubscription): where to POST, and the keys to encrypt for.
type Subscription struct {
	// Endpoint is the push resource URL at the browser's push service.
	Endpoint string `json:"endpoint"`
	// P256DH is the browser's public key, an uncompressed P-256 point.
	P256DH []byte `json:"p256dh"`
	// Auth is the browser's 16-byte auth secret.
	Auth []byte `json:"auth"`
	// Created is when the browser subscribed.
	Created time.Time `json:"created"`
}

// maxEndpoint bounds an endpoint URL.
const maxEndpoint = 2048

// ParseSubscription reads the JSON of PushSubscription.toJSON():
// {"endpoint": "https://…", "keys": {"p256dh": "…", "auth": "…"}}, keys in
// base64url. It checks the sizes and that p256dh is a P-256 point; the
// endpoint's address is checked when a message is sent (outbound policy).
func ParseSubscription(b []byte) (Subscription, error) {
	var in struct {
		Endpoint string `json:"endpoint"`
		Keys     struct {
			P256DH string `json:"p256dh"`
			Auth   string `json:"auth"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(b, &in); err != nil {
		return Subscription{}, errors.New("not a push subscription (JSON with endpoint and keys)")
	}
	u, err := url.Parse(in.Endpoint)
	switch {
	case in.Endpoint == "" || len(in.Endpoint) > maxEndpoint:
		return Subscription{}, fmt.Errorf("endpoint: required, at most %d characters", maxEndpoint)
	case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.Fragment != "":
		return Subscription{}, errors.New("endpoint: not an absolute http(s) URL without user info or fragment")
	}
	p, err1 := decodeKey(in.Keys.P256DH)
	a, err2 := decodeKey(in.Keys.Auth)
	if err1 != nil || err2 != nil {
		return Subscription{}, errors.New("keys: p256dh and auth must be base64url")
	}
	if len(a) != AuthSecretSize {
		return Subscription{}, fmt.Errorf("keys.auth: must be %d bytes", AuthSecretSize)
	}
	if _, err := ecdh.P256().NewPublicKey(p); err != nil {
		return Subscription{}, errors.New("keys.p256dh: not an uncompressed P-256 point")
	}
	return Subscription{Endpoint: in.Endpoint, P256DH: p, Auth: a}, nil
}

func decodeKey(s string) ([]byte, error) {
	if b, err := base64.RawURLEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return base64.URLEncoding.DecodeString(s)
}

// DefaultMax is how many subscriptions one user keeps when
// Subscriptions.Max is not set (channels.webpush.max_subscriptions_per_user's
// default); MaxLimit is the most Max may be. Whoever can subscribe for a
// user (one fresh approval per subscription) can thus never grow that
// user's record past MaxLimit entries of at most ~2.3 KiB each.
const (
	DefaultMax = 5
	MaxLimit   = 100
)

// swapTries bounds the compare-and-set loop of one change against
// concurrent changes of the same user's list; between tries the change
// waits a short random time (backoffStep), growing with the tries, so a
// burst of writers spreads out instead of colliding again.
const (
	swapTries   = 32
	backoffStep = 500 * time.Microsecond
)

// Errors of Subscriptions.
var (
	// ErrNotFound: the user has no subscription with the given id.
	ErrNotFound = errors.New("webpush: no such subscription")
	// ErrConflict: the user's list kept changing under a change
	// (swapTries compare-and-sets lost in a row); trying again later
	// may succeed.
	ErrConflict = errors.New("webpush: the subscriptions changed concurrently; try again")
)

// ID is the short id of the subscription as operators see it: 12 hex
// digits of a hash of the endpoint, which reveals nothing of the
// endpoint's path (the browser's capability).
func (s *Subscription) ID() string {
	sum := sha256.Sum256([]byte("cibaproxy webpush subscription\x00" + s.Endpoint))
	return hex.EncodeToString(sum[:6])
}

// Host is the host (and port) of the push service of the subscription,
// without the endpoint's path.
func (s *Subscription) Host() string {
	if u, err := url.Parse(s.Endpoint); err == nil {
		return u.Host
	}
	return ""
}

// Subscriptions keeps each user's subscriptions in the store's records,
// one record per user (under the user's subject), newest last, at most
// Max. Every change is a compare-and-set of that record (SwapRecord),
// tried again when another change came first: concurrent subscriptions
// of one user, and a subscription racing the removal of another, are
// all kept, on every backend, and no change ever leaves the record
// absent in between.
type Subscriptions struct {
	Records Records
	// Max bounds the subscriptions of one user (the oldest go to make
	// room); 0 is DefaultMax, and more than MaxLimit is MaxLimit.
	Max int
}

// limit is the bound in force.
func (s *Subscriptions) limit() int {
	switch {
	case s.Max <= 0:
		return DefaultMax
	case s.Max > MaxLimit:
		return MaxLimit
	}
	return s.Max
}

// List returns user's subscriptions, none when they have none.
func (s *Subscriptions) List(ctx context.Context, user string) ([]Subscription, error) {
	l, _, err := s.read(ctx, user)
	if err != nil {
		return nil, err
	}
	return l, nil
}

// read returns user's list and the record it was read from (nil: none).
func (s *Subscriptions) read(ctx context.Context, user string) ([]Subscription, []byte, error) {
	b, err := s.Records.GetRecord(ctx, SubscriptionsKind, user)
	if errors.Is(err, ciba.ErrNotFound) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("webpush: subscriptions: %w", err)
	}
	var l []Subscription
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, b, fmt.Errorf("webpush: subscriptions of a user: %w", err)
	}
	return l, b, nil
}

// Add stores sub for user, replacing one with the same endpoint; past
// Max the oldest subscriptions go.
func (s *Subscriptions) Add(ctx context.Context, user string, sub Subscription) error {
	return s.change(ctx, user, func(l []Subscription) ([]Subscription, error) {
		l = slices.DeleteFunc(l, func(x Subscription) bool { return x.Endpoint == sub.Endpoint })
		l = append(l, sub)
		if n := s.limit(); len(l) > n {
			l = l[len(l)-n:]
		}
		return l, nil
	})
}

// Remove forgets user's subscription at endpoint (the push service
// answered 404 or 410: it is gone). An endpoint the user does not have is
// no error.
func (s *Subscriptions) Remove(ctx context.Context, user, endpoint string) error {
	return s.change(ctx, user, func(l []Subscription) ([]Subscription, error) {
		return slices.DeleteFunc(l, func(x Subscription) bool { return x.Endpoint == endpoint }), nil
	})
}

// minIDPrefix is the shortest id prefix RemoveID takes.
const minIDPrefix = 8

// RemoveID forgets user's subscription whose ID starts with prefix (8 or
// more characters of it) and returns it; ErrNotFound when none or more
// than one does.
func (s *Subscriptions) RemoveID(ctx context.Context, user, prefix string) (Subscription, error) {
	var removed Subscription
	if len(prefix) < minIDPrefix {
		return removed, fmt.Errorf("%w: give at least %d characters of the subscription id", ErrNotFound, minIDPrefix)
	}
	err := s.change(ctx, user, func(l []Subscription) ([]Subscription, error) {
		at := -1
		for i := range l {
			if strings.HasPrefix(l[i].ID(), prefix) {
				if at >= 0 {
					return nil, fmt.Errorf("%w: %q names more than one subscription; give more of the id", ErrNotFound, prefix)
				}
				at = i
			}
		}
		if at < 0 {
			return nil, fmt.Errorf("%w: the user has no subscription %q", ErrNotFound, prefix)
		}
		removed = l[at]
		return slices.Delete(l, at, at+1), nil
	})
	return removed, err
}

// RemoveAll forgets every subscription of user and returns how many
// there were.
func (s *Subscriptions) RemoveAll(ctx context.Context, user string) (int, error) {
	n := 0
	err := s.change(ctx, user, func(l []Subscription) ([]Subscription, error) {
		n = len(l)
		return nil, nil
	})
	return n, err
}

// change applies fn to user's list and stores the result by
// compare-and-set over the record it read, trying again (with a short
// random wait) when the record changed meanwhile; an empty result deletes
// the record. An unreadable record is replaced as if empty.
func (s *Subscriptions) change(ctx context.Context, user string, fn func([]Subscription) ([]Subscription, error)) error {
	for try := range swapTries {
		if try > 0 {
			wait := time.Duration(rand.Int64N(int64(backoffStep) * int64(min(try, 16))))
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("webpush: subscriptions: %w", ctx.Err())
			case <-t.C:
			}
		}
		cur, raw, err := s.read(ctx, user)
		if err != nil && raw == nil {
			return err
		}
		next, err := fn(cur)
		if err != nil {
			return err
		}
		var b []byte
		if len(next) > 0 {
			if b, err = json.Marshal(next); err != nil {
				return fmt.Errorf("webpush: subscriptions: %w", err)
			}
		}
		if raw == nil && b == nil {
			return nil
		}
		ok, err := s.Records.SwapRecord(ctx, SubscriptionsKind, user, raw, b)
		if err != nil {
			return fmt.Errorf("webpush: subscriptions: %w", err)
		}
		if ok {
			return nil
		}
	}
	return ErrConflict
}
