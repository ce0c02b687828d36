package ciba

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"
)

// base is what every part of the service shares: the protocol settings,
// the clock, the logger, the store, and the mapping of store and upstream
// failures to protocol errors. Each part embeds one copy.
type base struct {
	cfg   Config
	now   func() time.Time
	log   *slog.Logger
	store Store
}

// transitionError maps the error of a state change for its caller.
func (b *base) transitionError(op string, err error) error {
	var pe *Error
	if errors.As(err, &pe) {
		return pe
	}
	if errors.Is(err, ErrNotFound) {
		return Errorf(CodeInvalidRequest, "unknown request")
	}
	return b.storeError(op, err)
}

// storeError turns a store failure into temporarily_unavailable and logs it.
func (b *base) storeError(op string, err error) error {
	b.log.Error("store failure", slog.String("op", op), slog.Any("error", err))
	return &Error{Code: CodeTemporarilyUnavailable, Description: "the request store is unavailable; try again later", Err: err}
}

// upstreamError passes protocol errors of the upstream through and hides
// anything else behind server_error.
func (b *base) upstreamError(op string, err error) error {
	var pe *Error
	if errors.As(err, &pe) {
		return pe
	}
	if errors.Is(err, ErrUnavailable) {
		b.log.Error("upstream unavailable", slog.String("op", op), slog.Any("error", err))
		return &Error{Code: CodeTemporarilyUnavailable, Description: "the identity provider is unavailable; try again later", Err: err}
	}
	b.log.Error("upstream failure", slog.String("op", op), slog.Any("error", err))
	return &Error{Code: CodeServerError, Description: "the identity provider failed", Err: err}
}

// grantable is what client c may be granted of the requested scopes: with
// the client's own list (clients[].scopes) every scope must be on it, else
// invalid_scope; without one, the service's Config.Scopes, when set, are
// kept and the others dropped (OIDC Core §3.1.2.1: scope values that are
// not understood SHOULD be ignored; RFC 6749 §3.3 lets the issuer grant a
// narrower scope, which the token response's scope then states).
func (b *base) grantable(c *Client, scopes []string) ([]string, *Error) {
	if len(c.Scopes) > 0 {
		for _, sc := range scopes {
			if !slices.Contains(c.Scopes, sc) {
				return nil, Errorf(CodeInvalidScope, "client %q may not request scope %q", c.ID, sc)
			}
		}
		return scopes, nil
	}
	if b.cfg.Scopes == nil {
		return scopes, nil
	}
	return slices.DeleteFunc(scopes, func(sc string) bool { return !slices.Contains(b.cfg.Scopes, sc) }), nil
}

// randomID returns n bytes from crypto/rand, base64url-encoded.
func randomID(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err)) // crypto/rand never fails on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b)
}
