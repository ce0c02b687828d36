package dpop

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"time"
)

// nonceMACLen is how many bytes of the HMAC a nonce keeps (128 bits).
const nonceMACLen = 16

// nonceSkew is how far in the future a nonce's time may be: instances'
// clocks differ a little.
const nonceSkew = 5 * time.Second

// NewNonce returns a fresh server nonce (RFC 9449 §8) for the DPoP-Nonce
// response header: the time of issue and an HMAC-SHA256 over it with the
// nonce key, base64url. Any instance with the same key accepts it for
// NonceLifetime, with no shared state. "" when nonces are not configured.
func (v *Verifier) NewNonce() string {
	if v.nonceKey == nil {
		return ""
	}
	var b [8 + nonceMACLen]byte
	binary.BigEndian.PutUint64(b[:8], uint64(v.now().Unix()))
	copy(b[8:], v.nonceMAC(b[:8]))
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// validNonce reports whether nonce is one of ours, made at most
// NonceLifetime before now.
func (v *Verifier) validNonce(nonce string, now time.Time) bool {
	b, err := base64.RawURLEncoding.DecodeString(nonce)
	if err != nil || len(b) != 8+nonceMACLen {
		return false
	}
	if !hmac.Equal(b[8:], v.nonceMAC(b[:8])) {
		return false
	}
	made := time.Unix(int64(binary.BigEndian.Uint64(b[:8])), 0)
	return !made.After(now.Add(nonceSkew)) && now.Sub(made) <= v.nonceLifetime
}

// nonceMAC is the truncated HMAC of a nonce's time, under a label so the
// key is used for nothing else.
func (v *Verifier) nonceMAC(ts []byte) []byte {
	m := hmac.New(sha256.New, v.nonceKey)
	m.Write([]byte("cibaproxy dpop nonce v1\x00"))
	m.Write(ts)
	return m.Sum(nil)[:nonceMACLen]
}
