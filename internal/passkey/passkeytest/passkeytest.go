// Package passkeytest is a software WebAuthn authenticator for tests: it
// answers creation and request options (as the browser's JSON) with the
// JSON of a PublicKeyCredential, "none" attestation, ES256, so that the
// ceremonies can be tested without a browser. Flags and the sign count are
// the test's to set, to make answers the server must refuse.
package passkeytest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// Authenticator flags (WebAuthn §6.1).
const (
	flagUP = 0x01
	flagUV = 0x04
	flagAT = 0x40
)

// Authenticator holds one credential.
type Authenticator struct {
	// Origin is the page's origin the "browser" puts in clientDataJSON.
	Origin string
	// NoUV leaves the user-verified flag out.
	NoUV bool
	// SignCount is the counter of the next answer (incremented before
	// each assertion).
	SignCount uint32

	key    *ecdsa.PrivateKey
	credID []byte
	handle []byte
	rpID   string
}

// New returns an authenticator for pages at origin.
func New(origin string) *Authenticator {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	id := make([]byte, 16)
	_, _ = rand.Read(id)
	return &Authenticator{Origin: origin, key: k, credID: id}
}

// CredentialID is the credential's id, base64url.
func (a *Authenticator) CredentialID() string { return base64.RawURLEncoding.EncodeToString(a.credID) }

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func (a *Authenticator) flags() byte {
	f := byte(flagUP)
	if !a.NoUV {
		f |= flagUV
	}
	return f
}

func (a *Authenticator) clientData(typ, challenge string) []byte {
	b, _ := json.Marshal(map[string]any{"type": typ, "challenge": challenge, "origin": a.Origin, "crossOrigin": false})
	return b
}

// Create answers creation options (their JSON) with a registration.
func (a *Authenticator) Create(options []byte) ([]byte, error) {
	var o struct {
		Challenge string `json:"challenge"`
		RP        struct {
			ID string `json:"id"`
		} `json:"rp"`
		User struct {
			ID string `json:"id"`
		} `json:"user"`
	}
	if err := json.Unmarshal(options, &o); err != nil {
		return nil, fmt.Errorf("passkeytest: creation options: %w", err)
	}
	a.rpID = o.RP.ID
	a.handle, _ = base64.RawURLEncoding.DecodeString(o.User.ID)
	rpHash := sha256.Sum256([]byte(o.RP.ID))
	cose, err := cbor.Marshal(map[int]any{1: 2, 3: -7, -1: 1, -2: pad32(a.key.X.Bytes()), -3: pad32(a.key.Y.Bytes())})
	if err != nil {
		return nil, err
	}
	auth := append([]byte{}, rpHash[:]...)
	auth = append(auth, a.flags()|flagAT, 0, 0, 0, 0)
	auth = append(auth, make([]byte, 16)...) // AAGUID
	auth = binary.BigEndian.AppendUint16(auth, uint16(len(a.credID)))
	auth = append(auth, a.credID...)
	auth = append(auth, cose...)
	att, err := cbor.Marshal(map[string]any{"fmt": "none", "attStmt": map[string]any{}, "authData": auth})
	if err != nil {
		return nil, err
	}
	cd := a.clientData("webauthn.create", o.Challenge)
	return json.Marshal(map[string]any{
		"id": b64(a.credID), "rawId": b64(a.credID), "type": "public-key",
		"response":               map[string]any{"clientDataJSON": b64(cd), "attestationObject": b64(att), "transports": []string{"internal"}},
		"clientExtensionResults": map[string]any{},
	})
}

// Get answers request options (their JSON) with an assertion.
func (a *Authenticator) Get(options []byte) ([]byte, error) {
	var o struct {
		Challenge string `json:"challenge"`
		RPID      string `json:"rpId"`
	}
	if err := json.Unmarshal(options, &o); err != nil {
		return nil, fmt.Errorf("passkeytest: request options: %w", err)
	}
	return a.Assert(o.RPID, o.Challenge)
}

// Assert signs an assertion over challenge (base64url) for rpID.
func (a *Authenticator) Assert(rpID, challenge string) ([]byte, error) {
	a.SignCount++
	rpHash := sha256.Sum256([]byte(rpID))
	auth := append([]byte{}, rpHash[:]...)
	auth = append(auth, a.flags())
	auth = binary.BigEndian.AppendUint32(auth, a.SignCount)
	cd := a.clientData("webauthn.get", challenge)
	cdHash := sha256.Sum256(cd)
	digest := sha256.Sum256(append(append([]byte{}, auth...), cdHash[:]...))
	sig, err := ecdsa.SignASN1(rand.Reader, a.key, digest[:])
	if err != nil {
		return nil, err
	}
	return json.Marshal(map[string]any{
		"id": b64(a.credID), "rawId": b64(a.credID), "type": "public-key",
		"response": map[string]any{"clientDataJSON": b64(cd), "authenticatorData": b64(auth),
			"signature": b64(sig), "userHandle": b64(a.handle)},
		"clientExtensionResults": map[string]any{},
	})
}

func pad32(b []byte) []byte {
	out := make([]byte, 32)
	copy(out[32-len(b):], b)
	return out
}
