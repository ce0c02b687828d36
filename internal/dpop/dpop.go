// Package dpop verifies DPoP proofs (RFC 9449): the JWT a client sends in
// the DPoP header to prove it holds the private key an access token is
// bound to. It knows nothing of auth requests or stores: it declares the
// one replay operation it needs (Replay) and its callers adapt a store to
// it, and it returns its own errors (Error), which the HTTP boundary turns
// into invalid_dpop_proof or use_dpop_nonce.
package dpop

import (
	"cmp"
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	gojose "github.com/go-jose/go-jose/v4"
)

// Defaults of Config.
const (
	// DefaultWindow is how far iat may be from the server's clock, in the
	// past or the future (RFC 9449 §11.1 leaves it to the server).
	DefaultWindow = 60 * time.Second
	// DefaultNonceLifetime is how long a server nonce is accepted.
	DefaultNonceLifetime = 5 * time.Minute
	// MaxProofSize is the largest proof accepted, in bytes of its compact
	// serialization: room for an RSA-4096 jwk with margin.
	MaxProofSize = 8 << 10
	// MinNonceKeyLen is the shortest nonce key, in bytes.
	MinNonceKeyLen = 32
	// maxJTI bounds the length of a jti; it goes into a store key's hash
	// but is kept short all the same.
	maxJTI = 256
	// minRSABits is the smallest RSA modulus accepted (RFC 7518 §3.3).
	minRSABits = 2048
	// typ is the type of a DPoP proof (RFC 9449 §4.2).
	typ = "dpop+jwt"
)

// DefaultAlgs returns the signature algorithms accepted when Config names
// none: every asymmetric JWS algorithm go-jose verifies, and never "none"
// or a MAC (RFC 9449 §4.2: "MUST NOT be none or an identifier for a
// symmetric algorithm").
func DefaultAlgs() []string {
	return []string{"ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "RS256", "RS384", "RS512", "EdDSA"}
}

// Replay remembers the proofs that were used, so each is accepted once
// (RFC 9449 §11.1). Seen records key until the given time and reports
// whether it was already recorded (and not yet expired). An error means
// the record could not be made, and the proof is refused all the same.
// Seen must be atomic across every instance that verifies proofs: two
// concurrent calls with one key never both report false. It need not
// check anything of the key: it is a fixed-length hash.
type Replay interface {
	Seen(ctx context.Context, key string, until time.Time) (bool, error)
}

// Config is the policy of a Verifier.
type Config struct {
	// Algs are the accepted signature algorithms; nil means DefaultAlgs.
	// Only asymmetric algorithms are allowed: NewVerifier refuses "none"
	// and HS*.
	Algs []string
	// Window is how far a proof's iat may be from now, either way; 0
	// means DefaultWindow. A proof is accepted (and its jti remembered)
	// for at most twice this long.
	Window time.Duration
	// NonceKey, when set (at least MinNonceKeyLen bytes), makes server
	// nonces mandatory (RFC 9449 §8): a proof without a valid nonce claim
	// is refused with ErrUseNonce and a fresh nonce. Nonces are an HMAC
	// over their time of issue, so every instance with the same key
	// accepts the nonces of the others, with no shared state.
	NonceKey []byte
	// NonceLifetime is how long a nonce is accepted after it is made; 0
	// means DefaultNonceLifetime.
	NonceLifetime time.Duration
	// Replay records the jti of each accepted proof. Required.
	Replay Replay
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Verifier checks DPoP proofs against one policy. It is safe for
// concurrent use.
type Verifier struct {
	algs          []gojose.SignatureAlgorithm
	names         []string
	window        time.Duration
	nonceKey      []byte
	nonceLifetime time.Duration
	replay        Replay
	now           func() time.Time
}

// NewVerifier returns a Verifier for cfg, or an error when cfg cannot be
// applied (no Replay, an unknown or symmetric algorithm, a short nonce
// key, a negative duration).
func NewVerifier(cfg Config) (*Verifier, error) {
	if cfg.Replay == nil {
		return nil, errors.New("dpop: config: Replay is required")
	}
	if cfg.Window < 0 || cfg.NonceLifetime < 0 {
		return nil, errors.New("dpop: config: negative window or nonce lifetime")
	}
	if cfg.NonceKey != nil && len(cfg.NonceKey) < MinNonceKeyLen {
		return nil, fmt.Errorf("dpop: config: the nonce key has %d bytes, at least %d are needed", len(cfg.NonceKey), MinNonceKeyLen)
	}
	names := cfg.Algs
	if names == nil {
		names = DefaultAlgs()
	}
	if len(names) == 0 {
		return nil, errors.New("dpop: config: no algorithm allowed")
	}
	allowed := DefaultAlgs()
	v := &Verifier{
		names:         slices.Clone(names),
		window:        cmp.Or(cfg.Window, DefaultWindow),
		nonceKey:      slices.Clone(cfg.NonceKey),
		nonceLifetime: cmp.Or(cfg.NonceLifetime, DefaultNonceLifetime),
		replay:        cfg.Replay,
		now:           cfg.Now,
	}
	for _, n := range names {
		if !slices.Contains(allowed, n) {
			return nil, fmt.Errorf("dpop: config: algorithm %q is not an asymmetric JWS algorithm (allowed: %s)", n, strings.Join(allowed, ", "))
		}
		v.algs = append(v.algs, gojose.SignatureAlgorithm(n))
	}
	if v.now == nil {
		v.now = time.Now
	}
	return v, nil
}

// Algs returns the accepted algorithms, for the metadata's
// dpop_signing_alg_values_supported (RFC 9449 §5.1).
func (v *Verifier) Algs() []string { return slices.Clone(v.names) }

// NoncesRequired reports whether proofs must carry a server nonce.
func (v *Verifier) NoncesRequired() bool { return v.nonceKey != nil }

// Request is what a proof is checked against: the HTTP request that
// carried it.
type Request struct {
	// Method is the request's method ("POST").
	Method string
	// URL is the endpoint's URL as clients are told it (the metadata's
	// token_endpoint, say), not as read off the request's Host header.
	// Its query and fragment are ignored.
	URL string
	// AccessToken is the access token presented with the proof at a
	// resource (RFC 9449 §7); "" at the token endpoint. When set, the
	// proof's ath must be its hash.
	AccessToken string
}

// Proof is what a verified proof establishes.
type Proof struct {
	// JKT is the JWK SHA-256 thumbprint (RFC 7638) of the proof's key,
	// base64url without padding: the cnf.jkt of a token bound to it
	// (RFC 9449 §6.1).
	JKT string
	// JTI is the proof's jti.
	JTI string
	// IssuedAt is the proof's iat.
	IssuedAt time.Time
}

// claims are the claims of a proof (RFC 9449 §4.2).
type claims struct {
	JTI   *string      `json:"jti"`
	HTM   *string      `json:"htm"`
	HTU   *string      `json:"htu"`
	IAT   *json.Number `json:"iat"`
	ATH   *string      `json:"ath"`
	Nonce *string      `json:"nonce"`
}

// Verify checks raw, the value of one DPoP header, against req following
// RFC 9449 §4.3, cheapest checks first and the replay record last, so a
// proof that fails another check does not use up its jti. The error is an
// *Error (ErrInvalidProof, ErrReplay, ErrUseNonce or ErrReplayCheck).
func (v *Verifier) Verify(ctx context.Context, raw string, req Request) (*Proof, error) {
	if raw == "" || len(raw) > MaxProofSize {
		return nil, invalid("", "missing or over %d bytes", MaxProofSize)
	}
	// §4.3 2–5: a JWT with a single signature, an allowed asymmetric alg,
	// typ dpop+jwt and a public jwk. go-jose refuses an embedded jwk that
	// is not a valid public key (a private or symmetric one) while parsing.
	jws, err := gojose.ParseSignedCompact(raw, v.algs)
	if err != nil {
		e := invalid("", "not a JWS in compact serialization with an allowed asymmetric alg (%s) and a public jwk", strings.Join(v.names, ", "))
		e.Err = err
		return nil, e
	}
	if len(jws.Signatures) != 1 {
		return nil, invalid("", "one signature is required")
	}
	h := jws.Signatures[0].Protected
	if t, ok := h.ExtraHeaders[gojose.HeaderType].(string); !ok || !strings.EqualFold(t, typ) {
		return nil, invalid("typ", "the typ header must be %q", typ)
	}
	jwk := h.JSONWebKey
	if jwk == nil {
		return nil, invalid("jwk", "the jwk header is missing")
	}
	if !jwk.Valid() || !jwk.IsPublic() {
		return nil, invalid("jwk", "the jwk header must be a public key")
	}
	if k, ok := jwk.Key.(*rsa.PublicKey); ok && k.N.BitLen() < minRSABits {
		return nil, invalid("jwk", "an RSA key must have at least %d bits", minRSABits)
	}
	payload, err := jws.Verify(jwk)
	if err != nil {
		e := invalid("", "the signature does not verify with the jwk header's key")
		e.Err = err
		return nil, e
	}
	var c claims
	if err := json.Unmarshal(payload, &c); err != nil {
		e := invalid("", "the claims are not a JSON object of the types RFC 9449 §4.2 gives")
		e.Err = err
		return nil, e
	}
	now := v.now()
	iat, perr := v.checkClaims(&c, req, now)
	if perr != nil {
		return nil, perr
	}
	if v.nonceKey != nil {
		if c.Nonce == nil || !v.validNonce(*c.Nonce, now) {
			reason := "a server nonce is required: retry with the DPoP-Nonce given"
			if c.Nonce != nil {
				reason = "the nonce is not valid (or no longer): retry with the DPoP-Nonce given"
			}
			return nil, &Error{Kind: ErrUseNonce, Field: "nonce", Reason: reason, Nonce: v.NewNonce()}
		}
	}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		e := invalid("jwk", "the jwk header has no thumbprint")
		e.Err = err
		return nil, e
	}
	jkt := base64.RawURLEncoding.EncodeToString(tp)
	// §11.1: one use of a jti per key within the window. The proof is
	// refused after iat+window, so the record need not outlive that.
	seen, err := v.replay.Seen(ctx, replayKey(jkt, *c.JTI), iat.Add(v.window+time.Second))
	if err != nil {
		return nil, &Error{Kind: ErrReplayCheck, Field: "jti", Reason: "the replay check could not be made", Err: err}
	}
	if seen {
		return nil, &Error{Kind: ErrReplay, Field: "jti", Reason: fmt.Sprintf("jti %q was already used", clip(*c.JTI))}
	}
	return &Proof{JKT: jkt, JTI: *c.JTI, IssuedAt: iat}, nil
}

// checkClaims checks jti, htm, htu, iat and ath (RFC 9449 §4.3 6–11 but
// the nonce) and returns iat.
func (v *Verifier) checkClaims(c *claims, req Request, now time.Time) (time.Time, *Error) {
	if c.JTI == nil || *c.JTI == "" {
		return time.Time{}, invalid("jti", "jti is missing")
	}
	if len(*c.JTI) > maxJTI {
		return time.Time{}, invalid("jti", "jti is over %d bytes", maxJTI)
	}
	if c.HTM == nil || *c.HTM != req.Method {
		return time.Time{}, invalid("htm", "htm must be the request's method %q", req.Method)
	}
	if c.HTU == nil {
		return time.Time{}, invalid("htu", "htu is missing")
	}
	want, err := NormalizeHTU(req.URL)
	if err != nil {
		return time.Time{}, &Error{Kind: ErrInvalidProof, Field: "htu", Reason: "the endpoint's URL cannot be compared", Err: err}
	}
	got, err := NormalizeHTU(*c.HTU)
	if err != nil || got != want {
		return time.Time{}, invalid("htu", "htu %q is not this endpoint's URL %q", clip(*c.HTU), want)
	}
	if c.IAT == nil {
		return time.Time{}, invalid("iat", "iat is missing")
	}
	secs, err := c.IAT.Float64()
	if err != nil || secs < 0 || secs > 1<<40 {
		return time.Time{}, invalid("iat", "iat is not a NumericDate")
	}
	iat := time.Unix(int64(secs), 0)
	if d := now.Sub(iat); d > v.window || d < -v.window {
		return time.Time{}, invalid("iat", "iat is more than %s from the server's time", v.window)
	}
	if req.AccessToken != "" {
		if c.ATH == nil {
			return time.Time{}, invalid("ath", "ath is required with an access token")
		}
		if subtle.ConstantTimeCompare([]byte(*c.ATH), []byte(AccessTokenHash(req.AccessToken))) != 1 {
			return time.Time{}, invalid("ath", "ath is not the hash of the access token presented")
		}
	}
	return iat, nil
}

// AccessTokenHash is the ath of an access token (RFC 9449 §4.2): the
// base64url SHA-256 of its ASCII bytes, without padding.
func AccessTokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// replayKey is the record key of a proof: fixed length, whatever the jti
// holds, and distinct per key so one client cannot use up another's jti.
func replayKey(jkt, jti string) string {
	h := sha256.New()
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(jkt)))
	h.Write(n[:])
	h.Write([]byte(jkt))
	h.Write([]byte(jti))
	return "dpop:" + hex.EncodeToString(h.Sum(nil))
}
