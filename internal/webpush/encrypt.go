// Package webpush speaks Web Push to push services: the message encryption
// of RFC 8291 (aes128gcm, RFC 8188, one record), the VAPID authorization of
// RFC 8292 (an ES256 JWT signed with go-jose) and the delivery of RFC 8030
// (a POST to the subscription's endpoint with TTL and Urgency). It also
// keeps the VAPID key pair and the users' subscriptions in the store's
// records. The cryptography is the standard library's (crypto/ecdh,
// crypto/hkdf, crypto/aes with GCM).
package webpush

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// Sizes fixed by RFC 8291.
const (
	// AuthSecretSize is the size of a subscription's auth secret (§3.2).
	AuthSecretSize = 16
	// publicKeySize is an uncompressed P-256 point (§3.1).
	publicKeySize = 65
	saltSize      = 16
	// RecordSize is the rs of every message: push services need accept
	// no more than 4096 bytes of payload (RFC 8291 §4), which is one
	// record.
	RecordSize = 4096
	// headerSize is salt, rs, idlen and the key id (RFC 8188 §2.1 with
	// the sender's public key as key id, RFC 8291 §4).
	headerSize = saltSize + 4 + 1 + publicKeySize
	// MaxPlaintext is the largest message that fits in one record of
	// RecordSize: the header, the padding delimiter and the GCM tag take
	// the rest.
	MaxPlaintext = RecordSize - headerSize - 1 - 16
)

// Encrypt encrypts plaintext for a user agent whose public key (p256dh,
// uncompressed) is uaPublic and whose auth secret is auth, with the
// application server's ephemeral key asKey and a random 16-byte salt, as
// RFC 8291 §3.4 and §4 say: the body of one aes128gcm record of rs 4096
// with the server's public key as key id. asKey and salt must be new for
// every message; they are parameters so that RFC 8291's example can be
// reproduced.
func Encrypt(plaintext, uaPublic, auth []byte, asKey *ecdh.PrivateKey, salt []byte) ([]byte, error) {
	if len(plaintext) > MaxPlaintext {
		return nil, fmt.Errorf("webpush: a message of %d bytes is over the %d a push service must take", len(plaintext), MaxPlaintext)
	}
	if len(salt) != saltSize {
		return nil, fmt.Errorf("webpush: the salt must be %d bytes", saltSize)
	}
	ua, err := ecdh.P256().NewPublicKey(uaPublic)
	if err != nil {
		return nil, fmt.Errorf("webpush: the subscription's p256dh is not a P-256 point: %w", err)
	}
	if len(auth) != AuthSecretSize {
		return nil, fmt.Errorf("webpush: the subscription's auth secret must be %d bytes, got %d", AuthSecretSize, len(auth))
	}
	asPublic := asKey.PublicKey().Bytes()
	aead, nonce, err := contentKey(asKey, ua, uaPublic, asPublic, auth, salt)
	if err != nil {
		return nil, err
	}
	body := make([]byte, 0, headerSize+len(plaintext)+1+aead.Overhead())
	body = append(body, salt...)
	body = binary.BigEndian.AppendUint32(body, RecordSize)
	body = append(body, publicKeySize)
	body = append(body, asPublic...)
	// One record, the last: the plaintext, then the delimiter 0x02 and no
	// padding (RFC 8188 §2).
	record := append(append(make([]byte, 0, len(plaintext)+1), plaintext...), 2)
	return aead.Seal(body, nonce, record, nil), nil
}

// contentKey derives the content encryption key and nonce (RFC 8291 §3.4,
// RFC 8188 §2.2, §2.3) from the ECDH of priv and peer. uaPublic and
// asPublic are the user agent's and the server's public keys, in that
// order whoever computes it.
func contentKey(priv *ecdh.PrivateKey, peer *ecdh.PublicKey, uaPublic, asPublic, auth, salt []byte) (cipher.AEAD, []byte, error) {
	shared, err := priv.ECDH(peer)
	if err != nil {
		return nil, nil, fmt.Errorf("webpush: ECDH: %w", err)
	}
	// PRK_key = HMAC-SHA-256(auth_secret, ecdh_secret)
	prkKey, err := hkdf.Extract(sha256.New, shared, auth)
	if err != nil {
		return nil, nil, fmt.Errorf("webpush: HKDF: %w", err)
	}
	// IKM = HKDF-Expand(PRK_key, "WebPush: info" || 0x00 || ua_public || as_public, 32)
	keyInfo := "WebPush: info\x00" + string(uaPublic) + string(asPublic)
	ikm, err := hkdf.Expand(sha256.New, prkKey, keyInfo, 32)
	if err != nil {
		return nil, nil, fmt.Errorf("webpush: HKDF: %w", err)
	}
	prk, err := hkdf.Extract(sha256.New, ikm, salt)
	if err != nil {
		return nil, nil, fmt.Errorf("webpush: HKDF: %w", err)
	}
	cek, err := hkdf.Expand(sha256.New, prk, "Content-Encoding: aes128gcm\x00", 16)
	if err != nil {
		return nil, nil, fmt.Errorf("webpush: HKDF: %w", err)
	}
	nonce, err := hkdf.Expand(sha256.New, prk, "Content-Encoding: nonce\x00", 12)
	if err != nil {
		return nil, nil, fmt.Errorf("webpush: HKDF: %w", err)
	}
	block, err := aes.NewCipher(cek)
	if err != nil {
		return nil, nil, fmt.Errorf("webpush: AES: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, nil, fmt.Errorf("webpush: GCM: %w", err)
	}
	return aead, nonce, nil
}

// Decrypt is the user agent's side of Encrypt: it opens a one-record
// aes128gcm body with the subscription's private key and auth secret. The
// server never needs it; tests and push service stand-ins do.
func Decrypt(body []byte, uaKey *ecdh.PrivateKey, auth []byte) ([]byte, error) {
	if len(body) < headerSize+16+1 {
		return nil, errors.New("webpush: body too short")
	}
	salt := body[:saltSize]
	rs := binary.BigEndian.Uint32(body[saltSize:])
	if body[saltSize+4] != publicKeySize {
		return nil, errors.New("webpush: the key id is not a P-256 public key")
	}
	asPublic := body[saltSize+5 : headerSize]
	if len(body)-headerSize > int(rs) {
		return nil, errors.New("webpush: more than one record")
	}
	as, err := ecdh.P256().NewPublicKey(asPublic)
	if err != nil {
		return nil, fmt.Errorf("webpush: key id: %w", err)
	}
	aead, nonce, err := contentKey(uaKey, as, uaKey.PublicKey().Bytes(), asPublic, auth, salt)
	if err != nil {
		return nil, err
	}
	plain, err := aead.Open(nil, nonce, body[headerSize:], nil)
	if err != nil {
		return nil, fmt.Errorf("webpush: decrypt: %w", err)
	}
	// Strip the padding back to the last-record delimiter 0x02.
	i := bytes.LastIndexFunc(plain, func(r rune) bool { return r != 0 })
	if i < 0 || plain[i] != 2 {
		return nil, errors.New("webpush: not the last record (no 0x02 delimiter)")
	}
	return plain[:i], nil
}
