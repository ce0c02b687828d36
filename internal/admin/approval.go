package admin

import (
	"encoding/base64"
	"encoding/json"
	"strings"

	"github.com/cibaproxy/cibaproxy/internal/passkey"
)

// ApprovalRecord is a request's signed approval record as the commands show
// it: the JWS itself, which anyone can check against the issuer's JWKS,
// and what it says, decoded (not verified here: the server signed it when
// the user approved).
type ApprovalRecord struct {
	JWS    string          `json:"jws"`
	KeyID  string          `json:"kid,omitempty"`
	Alg    string          `json:"alg,omitempty"`
	Claims *passkey.Record `json:"claims,omitempty"`
}

// approvalRecord decodes a compact JWS approval record; Claims is nil if
// it does not decode.
func approvalRecord(jws string) *ApprovalRecord {
	rec := &ApprovalRecord{JWS: jws}
	parts := strings.Split(jws, ".")
	if len(parts) != 3 {
		return rec
	}
	var header struct {
		Kid string `json:"kid"`
		Alg string `json:"alg"`
	}
	if b, err := base64.RawURLEncoding.DecodeString(parts[0]); err == nil && json.Unmarshal(b, &header) == nil {
		rec.KeyID, rec.Alg = header.Kid, header.Alg
	}
	var c passkey.Record
	if b, err := base64.RawURLEncoding.DecodeString(parts[1]); err == nil && json.Unmarshal(b, &c) == nil {
		rec.Claims = &c
	}
	return rec
}
