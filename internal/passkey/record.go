package passkey

import (
	"encoding/base64"
	"strings"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// RecordType is the typ header of a signed approval record.
const RecordType = "cibaproxy-approval+jwt"

// Record is the signed approval record of a request approved with a
// passkey: who approved what, when, with which credential. It is signed
// with cibaproxy's signing key (the tokens' key, published at jwks_uri),
// so it can be checked later by anyone with the JWKS.
type Record struct {
	// Issuer is cibaproxy's issuer.
	Issuer string `json:"iss"`
	// Subject is the user who approved.
	Subject string `json:"sub"`
	// AuthReqID is the request approved.
	AuthReqID string `json:"auth_req_id"`
	// ClientID is the client that asked.
	ClientID string `json:"client_id"`
	// Scope is what it asked for.
	Scope string `json:"scope"`
	// BindingMessage is the binding message the user was shown.
	BindingMessage string `json:"binding_message,omitempty"`
	// DetailsDigest is DetailsDigest of the authorization_details shown.
	DetailsDigest string `json:"authorization_details_sha256,omitempty"`
	// ApprovedAt is when (Unix seconds).
	ApprovedAt int64 `json:"iat"`
	// Method is "passkey".
	Method string `json:"amr_method"`
	// CredentialID is the passkey used (base64url).
	CredentialID string `json:"credential_id"`
	// UserVerified is the authenticator's UV flag (always true: it is
	// required).
	UserVerified bool `json:"uv"`
	// Challenge is the challenge the authenticator signed (base64url).
	Challenge string `json:"challenge"`
}

// Signer signs claims as a compact JWS (keys.Manager).
type Signer interface {
	Sign(claims any, typ string) (string, error)
}

// NewRecord returns the approval record of request r approved at at with
// the credential id credID.
func NewRecord(issuer string, r *ciba.AuthRequest, credID []byte, at time.Time) Record {
	return Record{
		Issuer: issuer, Subject: r.Subject, AuthReqID: r.ID, ClientID: r.ClientID,
		Scope: strings.Join(r.Scopes, " "), BindingMessage: r.BindingMessage,
		DetailsDigest: DetailsDigest(r.AuthzDetails), ApprovedAt: at.Unix(), Method: "passkey",
		CredentialID: base64.RawURLEncoding.EncodeToString(credID), UserVerified: true,
		Challenge: base64.RawURLEncoding.EncodeToString(Challenge(r)),
	}
}
