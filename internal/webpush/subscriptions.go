package webpush

import (
	"context"
	"crypto/ecdh"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
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

// Subscriptions keeps each user's subscriptions in the store's records,
// under the user's subject, newest last, at most Max.
//
// The records API has no compare-and-set on a value, so a change takes
// the user's list and puts the changed list back; a concurrent change
// that put a list meanwhile (ErrExists) is merged and put again. A crash
// between the take and the put loses that user's list (the user
// subscribes again), and a message sent in that instant finds none and
// falls to the next channel.
type Subscriptions struct {
	Records Records
	// Max bounds the subscriptions of one user: the oldest go.
	Max int
}

// List returns user's subscriptions, none when they have none.
func (s *Subscriptions) List(ctx context.Context, user string) ([]Subscription, error) {
	b, err := s.Records.GetRecord(ctx, SubscriptionsKind, user)
	if errors.Is(err, ciba.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("webpush: subscriptions: %w", err)
	}
	var l []Subscription
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("webpush: subscriptions of a user: %w", err)
	}
	return l, nil
}

// Add stores sub for user, replacing one with the same endpoint.
func (s *Subscriptions) Add(ctx context.Context, user string, sub Subscription) error {
	return s.change(ctx, user, func(l []Subscription) []Subscription {
		l = slices.DeleteFunc(l, func(x Subscription) bool { return x.Endpoint == sub.Endpoint })
		l = append(l, sub)
		if n := max(s.Max, 1); len(l) > n {
			l = l[len(l)-n:]
		}
		return l
	})
}

// Remove forgets user's subscription at endpoint (the push service
// answered 404 or 410: it is gone).
func (s *Subscriptions) Remove(ctx context.Context, user, endpoint string) error {
	return s.change(ctx, user, func(l []Subscription) []Subscription {
		return slices.DeleteFunc(l, func(x Subscription) bool { return x.Endpoint == endpoint })
	})
}

// change applies fn to user's list: take it, put fn's result back, and
// on a concurrent put merge with what was put and try again.
func (s *Subscriptions) change(ctx context.Context, user string, fn func([]Subscription) []Subscription) error {
	var mine []Subscription
	for range 8 {
		b, err := s.Records.TakeRecord(ctx, SubscriptionsKind, user)
		var cur []Subscription
		switch {
		case errors.Is(err, ciba.ErrNotFound):
		case err != nil:
			return fmt.Errorf("webpush: subscriptions: %w", err)
		default:
			if err := json.Unmarshal(b, &cur); err != nil {
				cur = nil // unreadable: start again
			}
		}
		// What an earlier round put and lost to another writer is
		// merged back.
		for _, x := range mine {
			if !slices.ContainsFunc(cur, func(y Subscription) bool { return y.Endpoint == x.Endpoint }) {
				cur = append(cur, x)
			}
		}
		next := fn(cur)
		if len(next) == 0 {
			return nil
		}
		b, err = json.Marshal(next)
		if err != nil {
			return fmt.Errorf("webpush: subscriptions: %w", err)
		}
		switch err := s.Records.PutRecord(ctx, SubscriptionsKind, user, b, 0); {
		case err == nil:
			return nil
		case errors.Is(err, ciba.ErrExists):
			mine = next
		default:
			return fmt.Errorf("webpush: subscriptions: %w", err)
		}
	}
	return errors.New("webpush: subscriptions: too many concurrent changes")
}
