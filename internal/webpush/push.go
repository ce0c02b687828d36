package webpush

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/outbound"
)

// Sender posts encrypted messages to push services (RFC 8030 §5).
type Sender struct {
	// Client makes the POSTs; it should be guarded (outbound.Guard), since
	// a browser chose the endpoint.
	Client *outbound.Client
	// VAPID signs each message's authorization.
	VAPID *VAPID
	// Subject is the VAPID sub: the operator's mailto: or https: contact.
	Subject string
	// Urgency is the RFC 8030 §5.3 Urgency header (very-low … high).
	Urgency string
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// ErrGone is wrapped by Send's error when the push service answered 404 or
// 410: the subscription has expired or was withdrawn (RFC 8030 §7.3), and
// must be forgotten.
var ErrGone = errors.New("webpush: the subscription is gone")

// ErrRefused is wrapped by Send's error when the push service refused the
// message itself (400, 401, 403, 413): sending it again will not help.
var ErrRefused = errors.New("webpush: the push service refused the message")

// Send encrypts payload for sub and posts it, to be kept by the push
// service for ttl if the browser is offline. A 404 or 410 answer wraps
// ErrGone, a 400, 401, 403 or 413 ErrRefused; other failures (5xx, 429,
// the network) are worth another try.
func (s *Sender) Send(ctx context.Context, sub Subscription, payload []byte, ttl time.Duration) error {
	asKey, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("webpush: ephemeral key: %w", err)
	}
	salt := make([]byte, saltSize)
	if _, err := rand.Read(salt); err != nil {
		return fmt.Errorf("webpush: salt: %w", err)
	}
	body, err := Encrypt(payload, sub.P256DH, sub.Auth, asKey, salt)
	if err != nil {
		return err
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	auth, err := s.VAPID.Authorization(sub.Endpoint, s.Subject, now())
	if err != nil {
		return err
	}
	h := http.Header{
		"Content-Type":     {"application/octet-stream"},
		"Content-Encoding": {"aes128gcm"},
		"Ttl":              {strconv.FormatInt(int64(max(ttl, 0)/time.Second), 10)},
		"Authorization":    {auth},
	}
	if s.Urgency != "" {
		h.Set("Urgency", s.Urgency)
	}
	err = hidePath(s.Client.Post(ctx, sub.Endpoint, h, body), sub.Endpoint)
	var se *outbound.StatusError
	if errors.As(err, &se) {
		switch se.Status {
		case http.StatusNotFound, http.StatusGone:
			return fmt.Errorf("%w: %w", ErrGone, err)
		case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusRequestEntityTooLarge:
			return fmt.Errorf("%w: %w", ErrRefused, err)
		}
	}
	return err
}

// pathHidden is an error whose message names the push service's origin
// but not the endpoint's path, which is the subscription's capability (a
// secret of the browser's); it unwraps to the original.
type pathHidden struct {
	msg string
	err error
}

func (e *pathHidden) Error() string { return e.msg }
func (e *pathHidden) Unwrap() error { return e.err }

// hidePath removes the path of endpoint from err's message.
func hidePath(err error, endpoint string) error {
	if err == nil {
		return nil
	}
	u, perr := url.Parse(endpoint)
	if perr != nil {
		return &pathHidden{msg: "webpush: the push endpoint failed", err: err}
	}
	origin := u.Scheme + "://" + u.Host
	msg := strings.ReplaceAll(err.Error(), outbound.Redact(endpoint), origin+"/…")
	if p := u.EscapedPath(); len(p) > 1 {
		msg = strings.ReplaceAll(msg, p, "/…")
	}
	return &pathHidden{msg: msg, err: err}
}
