package passkey

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"strings"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// Challenge is the WebAuthn challenge of an assertion that approves
// request r: a SHA-256 over, each length-prefixed, its auth_req_id (128
// random bits the user's side never sees, so the challenge cannot be
// guessed ahead), its approval id, client, subject, binding message,
// scope and the digest of its authorization_details. The authenticator
// signs over it (in clientDataJSON), so an assertion made for one request
// verifies for no other, nor for this one once anything the user was
// shown is different. Nothing is stored: every instance derives the same.
func Challenge(r *ciba.AuthRequest) []byte {
	h := sha256.New()
	field := func(s string) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	field("cibaproxy passkey approval v1")
	field(r.ID)
	field(r.ApprovalID)
	field(r.ClientID)
	field(r.Subject)
	field(r.BindingMessage)
	field(strings.Join(r.Scopes, " "))
	field(DetailsDigest(r.AuthzDetails))
	return h.Sum(nil)
}

// DetailsDigest is the base64url SHA-256 of the canonical
// authorization_details of a request ("" for none): what the approval
// record names as approved.
func DetailsDigest(details string) string {
	if details == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(details))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}
