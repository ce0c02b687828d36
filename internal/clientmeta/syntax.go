package clientmeta

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/crypto/bcrypt"
)

// CheckHTTPURL returns why s is not an absolute http(s) URL without
// fragment (a fragment is never sent to the server), or "". The message
// does not quote s: a webhook or notification URL may carry a token.
func CheckHTTPURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Sprintf("not a valid URL: %v", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return "must be an absolute http or https URL"
	}
	if u.Fragment != "" || strings.Contains(s, "#") {
		return "must not have a fragment (\"#…\")"
	}
	return ""
}

// CheckBcrypt returns why h is not a bcrypt hash, or "". It never quotes h.
func CheckBcrypt(h string) string {
	if _, err := bcrypt.Cost([]byte(h)); err != nil || len(h) != 60 {
		return "not a bcrypt hash: expected 60 characters like \"$2a$10$…\" (make one with `printf %s 'secret' | cibaproxy hash-secret`)"
	}
	return ""
}

// IsVSChars reports whether s is non-empty printable ASCII (RFC 6749
// Appendix A: VSCHAR = %x20-7E), as a client_id is.
func IsVSChars(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return s != ""
}

// IsScopeToken reports whether s is a scope-token (RFC 6749 §3.3:
// 1*( %x21 / %x23-5B / %x5D-7E )).
func IsScopeToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return s != ""
}

// checkJWKS checks an inline client JWK Set and returns its keys. Problems
// are reported through fail, with the path of the key they concern (relative
// to the jwks value, e.g. "keys[1]").
func checkJWKS(raw json.RawMessage, fail func(sub, format string, args ...any)) []jose.JSONWebKey {
	var set struct {
		Keys *[]json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(raw, &set); err != nil {
		fail("", "not a JWK Set (RFC 7517 §5), a {\"keys\": [...]} object: %v", err)
		return nil
	}
	if set.Keys == nil || len(*set.Keys) == 0 {
		fail("", "the JWK Set holds no keys; it needs {\"keys\": [...]} with the client's public keys")
		return nil
	}
	var keys []jose.JSONWebKey
	kids := make(map[string]int)
	for j, r := range *set.Keys {
		if k, ok := checkJWK(r, j, kids, fail); ok {
			keys = append(keys, k)
		}
	}
	return keys
}

// checkJWK checks key j of a client JWK Set; kids are the key ids seen so
// far, by index.
func checkJWK(r json.RawMessage, j int, kids map[string]int, fail func(sub, format string, args ...any)) (jose.JSONWebKey, bool) {
	sub := fmt.Sprintf("keys[%d]", j)
	var k jose.JSONWebKey
	if err := k.UnmarshalJSON(r); err != nil {
		fail(sub, "not a valid JWK: %v", err)
		return k, false
	}
	if !k.IsPublic() {
		fail(sub, "holds a private or symmetric key; publish only the public part (drop \"d\", \"p\", \"q\", \"dp\", \"dq\", \"qi\", \"k\")")
		return k, false
	}
	if !k.Valid() {
		fail(sub, "the JWK is incomplete")
		return k, false
	}
	if k.KeyID != "" {
		if first, dup := kids[k.KeyID]; dup {
			fail(sub, "duplicate kid %q (also keys[%d]); a signature's kid must select one key", k.KeyID, first)
			return k, false
		}
		kids[k.KeyID] = j
	}
	return k, true
}

// keyFitsAlg reports whether a public JWK can verify signatures of alg.
func keyFitsAlg(k jose.JSONWebKey, alg string) bool {
	if k.Algorithm != "" && k.Algorithm != alg {
		return false
	}
	if k.Use != "" && k.Use != "sig" {
		return false
	}
	switch alg {
	case "RS256", "PS256":
		_, ok := k.Key.(*rsa.PublicKey)
		return ok
	case "ES256":
		ec, ok := k.Key.(*ecdsa.PublicKey)
		return ok && ec.Curve == elliptic.P256()
	}
	return false
}
