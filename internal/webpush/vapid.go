package webpush

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"

	gojose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// Records is the part of the store this package keeps its state in
// (ciba.Store's records).
type Records interface {
	PutRecord(ctx context.Context, kind, key string, value []byte, ttl time.Duration) error
	GetRecord(ctx context.Context, kind, key string) ([]byte, error)
	SwapRecord(ctx context.Context, kind, key string, old, new []byte) (bool, error)
}

// Record kinds and keys of this package.
const (
	// VAPIDKind and VAPIDKey hold the VAPID key pair, a private ES256 JWK,
	// written once and never changed.
	VAPIDKind = "webpush-vapid"
	VAPIDKey  = "es256"
	// SubscriptionsKind holds, under each user's subject, the user's
	// subscriptions (a JSON list).
	SubscriptionsKind = "webpush-subscriptions"
)

// vapidLifetime is the life of a VAPID token: RFC 8292 §2 forbids more
// than 24 hours.
const vapidLifetime = 12 * time.Hour

// VAPID is the application server's key pair (RFC 8292 §3.2): browsers
// subscribe with its public key, and push services check each message's
// token against it.
type VAPID struct {
	key *ecdsa.PrivateKey
	pub string
}

// LoadVAPID returns the key pair kept in rec, made and stored on first
// use; when two instances make one at once, both use the one stored first.
func LoadVAPID(ctx context.Context, rec Records) (*VAPID, error) {
	b, err := rec.GetRecord(ctx, VAPIDKind, VAPIDKey)
	if errors.Is(err, ciba.ErrNotFound) {
		b, err = createVAPID(ctx, rec)
	}
	if err != nil {
		return nil, fmt.Errorf("webpush: VAPID key in the store: %w", err)
	}
	var jwk gojose.JSONWebKey
	if err := jwk.UnmarshalJSON(b); err != nil {
		return nil, fmt.Errorf("webpush: VAPID key in the store: %w", err)
	}
	k, ok := jwk.Key.(*ecdsa.PrivateKey)
	if !ok || k.Curve != elliptic.P256() {
		return nil, errors.New("webpush: VAPID key in the store: not a P-256 private key")
	}
	return newVAPID(k)
}

func newVAPID(k *ecdsa.PrivateKey) (*VAPID, error) {
	pub, err := k.PublicKey.ECDH()
	if err != nil {
		return nil, fmt.Errorf("webpush: VAPID key: %w", err)
	}
	return &VAPID{key: k, pub: base64.RawURLEncoding.EncodeToString(pub.Bytes())}, nil
}

func createVAPID(ctx context.Context, rec Records) ([]byte, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(gojose.JSONWebKey{Key: k, Algorithm: string(gojose.ES256), Use: "sig"})
	if err != nil {
		return nil, err
	}
	switch err := rec.PutRecord(ctx, VAPIDKind, VAPIDKey, b, 0); {
	case err == nil:
		return b, nil
	case errors.Is(err, ciba.ErrExists):
		return rec.GetRecord(ctx, VAPIDKind, VAPIDKey)
	default:
		return nil, err
	}
}

// PublicKey is the applicationServerKey a browser subscribes with: the
// uncompressed P-256 point, base64url without padding (RFC 8292 §3.2).
func (v *VAPID) PublicKey() string { return v.pub }

// Authorization is the Authorization header value of a message to
// endpoint (RFC 8292 §3): "vapid t=<JWT>, k=<public key>", the JWT
// signed ES256 with aud the endpoint's origin, exp 12 hours after now and
// sub the operator's contact.
func (v *VAPID) Authorization(endpoint, subject string, now time.Time) (string, error) {
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" {
		return "", errors.New("webpush: the endpoint is not an absolute URL")
	}
	signer, err := gojose.NewSigner(gojose.SigningKey{Algorithm: gojose.ES256, Key: v.key},
		(&gojose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", fmt.Errorf("webpush: VAPID signer: %w", err)
	}
	tok, err := jwt.Signed(signer).Claims(jwt.Claims{
		Audience: jwt.Audience{u.Scheme + "://" + u.Host},
		Expiry:   jwt.NewNumericDate(now.Add(vapidLifetime)),
		Subject:  subject,
	}).Serialize()
	if err != nil {
		return "", fmt.Errorf("webpush: VAPID token: %w", err)
	}
	return "vapid t=" + tok + ", k=" + v.pub, nil
}
