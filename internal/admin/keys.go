package admin

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/keys"
)

// The signing keys on the admin socket:
//
//	POST /v1/keys/rotate?publish_ahead=DURATION   keys.Rotation
//
// The server rotates the key set in its store and reads it back at once;
// errors are not_rotatable (409: the keys come from a file), conflict (409:
// another rotation won) or bad_request.

// KeyRotator rotates a server's signing keys, publishing the new key
// publishAhead before it signs.
type KeyRotator func(ctx context.Context, publishAhead time.Duration) (*keys.Rotation, error)

// KeysHandler serves POST /v1/keys/rotate with rotate; rotations are
// logged to log (key ids and times only).
func KeysHandler(rotate KeyRotator, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/keys/rotate", func(w http.ResponseWriter, r *http.Request) {
		ahead := keys.DefaultPublishAhead
		if s := r.URL.Query().Get("publish_ahead"); s != "" {
			d, err := time.ParseDuration(s)
			if err != nil {
				answer(w, nil, badRequestf("publish_ahead: %w", err))
				return
			}
			ahead = d
		}
		if ahead < keys.MinPublishAhead {
			answer(w, nil, badRequestf("publish_ahead must be at least %v (the JWKS cache lifetime plus the reload period)", keys.MinPublishAhead))
			return
		}
		rot, err := rotate(r.Context(), ahead)
		if err == nil {
			LogRotation(r.Context(), log, rot)
		}
		answer(w, rot, err)
	})
	return mux
}

// LogRotation logs a rotation: key ids and times, no key material.
func LogRotation(ctx context.Context, log *slog.Logger, r *keys.Rotation) {
	log.LogAttrs(ctx, slog.LevelInfo, "signing keys rotated: the new key is published now and signs from signs_from",
		slog.String("kid", r.New.KeyID), slog.Time("signs_from", r.New.NotBefore), slog.Int("generation", r.Generation))
	for _, k := range r.Keys[1:] {
		log.LogAttrs(ctx, slog.LevelInfo, "signing key retiring: it stops signing at signs_until and leaves jwks_uri at published_until",
			slog.String("kid", k.KeyID), slog.Time("signs_until", r.New.NotBefore), slog.Time("published_until", k.Until))
	}
}

// RotateKeys asks the server to rotate its signing keys.
func (c *Client) RotateKeys(ctx context.Context, publishAhead time.Duration) (*keys.Rotation, error) {
	var v keys.Rotation
	q := url.Values{"publish_ahead": {publishAhead.String()}}
	if err := c.do(ctx, http.MethodPost, "/v1/keys/rotate?"+q.Encode(), &v); err != nil {
		return nil, err
	}
	return &v, nil
}
