// Package seal encrypts values at rest with AES-256-GCM under a ring of keys:
// the newest key seals, every key opens, so keys can be rotated without
// losing what was sealed before. cibaproxy uses it for token responses held
// between approval and delivery.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
)

// KeySize is the length of an AES-256 key in bytes.
const KeySize = 32

// Key is one named key of the ring.
type Key struct {
	// ID names the key in sealed values; at most 255 bytes.
	ID string
	// Secret is the 32-byte AES-256 key.
	Secret []byte
}

// Ring seals with its first key and opens with any of its keys. It is safe
// for concurrent use.
type Ring struct {
	primary string
	aeads   map[string]cipher.AEAD
}

// NewRing returns a ring whose first key seals. It fails on an empty ring, a
// key of the wrong size and duplicate ids.
func NewRing(keys ...Key) (*Ring, error) {
	if len(keys) == 0 {
		return nil, errors.New("seal: no keys")
	}
	r := &Ring{primary: keys[0].ID, aeads: make(map[string]cipher.AEAD, len(keys))}
	for _, k := range keys {
		if k.ID == "" || len(k.ID) > 255 {
			return nil, fmt.Errorf("seal: key id %q must be 1 to 255 bytes", k.ID)
		}
		if len(k.Secret) != KeySize {
			return nil, fmt.Errorf("seal: key %q is %d bytes, want %d", k.ID, len(k.Secret), KeySize)
		}
		if _, dup := r.aeads[k.ID]; dup {
			return nil, fmt.Errorf("seal: duplicate key id %q", k.ID)
		}
		block, err := aes.NewCipher(k.Secret)
		if err != nil {
			return nil, fmt.Errorf("seal: key %q: %w", k.ID, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("seal: key %q: %w", k.ID, err)
		}
		r.aeads[k.ID] = aead
	}
	return r, nil
}

// Seal encrypts plaintext bound to additionalData. The result is
// len(id) ‖ id ‖ nonce ‖ ciphertext.
func (r *Ring) Seal(plaintext, additionalData []byte) ([]byte, error) {
	aead := r.aeads[r.primary]
	out := make([]byte, 0, 1+len(r.primary)+aead.NonceSize()+len(plaintext)+aead.Overhead())
	out = append(out, byte(len(r.primary)))
	out = append(out, r.primary...)
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal: nonce: %w", err)
	}
	out = append(out, nonce...)
	return aead.Seal(out, nonce, plaintext, additionalData), nil
}

// Open decrypts a value made by Seal with the same additional data.
func (r *Ring) Open(sealed, additionalData []byte) ([]byte, error) {
	if len(sealed) < 1 || len(sealed) < 1+int(sealed[0]) {
		return nil, errors.New("seal: value too short")
	}
	id := string(sealed[1 : 1+int(sealed[0])])
	aead, ok := r.aeads[id]
	if !ok {
		return nil, fmt.Errorf("seal: value sealed with unknown key %q", id)
	}
	rest := sealed[1+len(id):]
	if len(rest) < aead.NonceSize()+aead.Overhead() {
		return nil, errors.New("seal: value too short")
	}
	plain, err := aead.Open(nil, rest[:aead.NonceSize()], rest[aead.NonceSize():], additionalData)
	if err != nil {
		return nil, fmt.Errorf("seal: key %q: %w", id, err)
	}
	return plain, nil
}
