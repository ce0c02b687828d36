package webpush

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"testing"
)

// RFC 8291 §5 and Appendix A: the example's inputs and its encrypted body.
const (
	rfcPlaintext = "When I grow up, I want to be a watermelon"
	rfcASPrivate = "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw"
	rfcASPublic  = "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8"
	rfcUAPrivate = "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94"
	rfcUAPublic  = "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"
	rfcSalt      = "DGv6ra1nlYgDCS1FRnbzlw"
	rfcAuth      = "BTBZMqHH6r4Tts7J_aSIgg"
	rfcBody      = "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN"
)

func b64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestEncryptMatchesRFC8291Example: with the example's keys and salt,
// Encrypt writes exactly the example's body, byte for byte.
func TestEncryptMatchesRFC8291Example(t *testing.T) {
	as, err := ecdh.P256().NewPrivateKey(b64(t, rfcASPrivate))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(as.PublicKey().Bytes(), b64(t, rfcASPublic)) {
		t.Fatal("as_private does not give the example's as_public")
	}
	got, err := Encrypt([]byte(rfcPlaintext), b64(t, rfcUAPublic), b64(t, rfcAuth), as, b64(t, rfcSalt))
	if err != nil {
		t.Fatal(err)
	}
	if want := b64(t, rfcBody); !bytes.Equal(got, want) {
		t.Fatalf("body differs from RFC 8291 §5:\n got %s\nwant %s", base64.RawURLEncoding.EncodeToString(got), rfcBody)
	}
}

// TestDecryptOpensRFC8291Example: the user agent's side reads the example's
// body back with ua_private and the auth secret.
func TestDecryptOpensRFC8291Example(t *testing.T) {
	ua, err := ecdh.P256().NewPrivateKey(b64(t, rfcUAPrivate))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ua.PublicKey().Bytes(), b64(t, rfcUAPublic)) {
		t.Fatal("ua_private does not give the example's ua_public")
	}
	got, err := Decrypt(b64(t, rfcBody), ua, b64(t, rfcAuth))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != rfcPlaintext {
		t.Fatalf("got %q", got)
	}
	// A wrong auth secret does not open it.
	if _, err := Decrypt(b64(t, rfcBody), ua, make([]byte, 16)); err == nil {
		t.Fatal("opened with the wrong auth secret")
	}
}

// TestEncryptRefusesBadInput: a message over one record, a p256dh that is
// not a point, an auth secret of the wrong size are refused.
func TestEncryptRefusesBadInput(t *testing.T) {
	as, _ := ecdh.P256().GenerateKey(rand.Reader)
	ua, _ := ecdh.P256().GenerateKey(rand.Reader)
	salt := make([]byte, 16)
	auth := make([]byte, 16)
	if _, err := Encrypt(make([]byte, MaxPlaintext+1), ua.PublicKey().Bytes(), auth, as, salt); err == nil {
		t.Error("a message over MaxPlaintext was encrypted")
	}
	if _, err := Encrypt([]byte("x"), []byte("not a point"), auth, as, salt); err == nil {
		t.Error("a bad p256dh was taken")
	}
	if _, err := Encrypt([]byte("x"), ua.PublicKey().Bytes(), auth[:8], as, salt); err == nil {
		t.Error("an 8-byte auth secret was taken")
	}
	body, err := Encrypt(make([]byte, MaxPlaintext), ua.PublicKey().Bytes(), auth, as, salt)
	if err != nil || len(body) != RecordSize {
		t.Fatalf("the largest message: %d bytes, %v", len(body), err)
	}
	if got, err := Decrypt(body, ua, auth); err != nil || len(got) != MaxPlaintext {
		t.Fatalf("round trip: %d bytes, %v", len(got), err)
	}
}
