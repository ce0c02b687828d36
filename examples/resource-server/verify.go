package main

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Error is a refused request: Code is the WWW-Authenticate error (RFC 6750
// §3.1, RFC 9449 §7.1), Description says why, for the client.
type Error struct {
	Code        string
	Description string
}

func (e *Error) Error() string { return e.Code + ": " + e.Description }

func invalidToken(format string, args ...any) error {
	return &Error{Code: "invalid_token", Description: fmt.Sprintf(format, args...)}
}

func invalidProof(format string, args ...any) error {
	return &Error{Code: "invalid_dpop_proof", Description: fmt.Sprintf(format, args...)}
}

// KeySet returns the issuer's public keys (its jwks_uri), refreshed when
// refresh is set because a kid was not found.
type KeySet func(ctx context.Context, refresh bool) (*jose.JSONWebKeySet, error)

// Verifier checks that a request carries a DPoP-bound JWT access token of
// one issuer (RFC 9068) and a DPoP proof of the key it is bound to (RFC
// 9449 §7). It is safe for concurrent use. One instance remembers the
// proofs it saw in memory: resource servers behind a load balancer need a
// shared record of jti (Redis SET NX with an expiry does it).
type Verifier struct {
	// Issuer is the iss of the access tokens: cibaproxy's issuer.
	Issuer string
	// Audience is the aud the tokens must carry; cibaproxy's local
	// issuer puts its own issuer there.
	Audience string
	// Keys are the issuer's signing keys.
	Keys KeySet
	// TokenAlgs are the algorithms the issuer signs access tokens with.
	TokenAlgs []jose.SignatureAlgorithm
	// ProofAlgs are the algorithms accepted for DPoP proofs: asymmetric
	// only (RFC 9449 §4.2).
	ProofAlgs []jose.SignatureAlgorithm
	// Window is how far a proof's iat may be from now, either way.
	Window time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time

	mu   sync.Mutex
	seen map[string]time.Time // replay key → when it may be forgotten
}

// DefaultAlgs are the asymmetric algorithms accepted by default, for
// tokens and proofs alike.
var DefaultAlgs = []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.ES512, jose.PS256, jose.PS384, jose.PS512, jose.RS256, jose.RS384, jose.RS512, jose.EdDSA}

// Claims are what a verified request establishes.
type Claims struct {
	Subject  string `json:"sub"`
	ClientID string `json:"client_id"`
	Scope    string `json:"scope"`
	// JKT is the thumbprint of the key the token is bound to.
	JKT string `json:"jkt"`
}

// accessClaims are the claims read from a cibaproxy access token.
type accessClaims struct {
	jwt.Claims
	ClientID string `json:"client_id"`
	Scope    string `json:"scope"`
	Cnf      *struct {
		JKT string `json:"jkt"`
	} `json:"cnf"`
}

// proofClaims are a DPoP proof's claims (RFC 9449 §4.2).
type proofClaims struct {
	JTI *string          `json:"jti"`
	HTM *string          `json:"htm"`
	HTU *string          `json:"htu"`
	IAT *jwt.NumericDate `json:"iat"`
	ATH *string          `json:"ath"`
}

// Check verifies the access token and DPoP proof of request r, made to the
// resource at publicURL (its URL as clients call it, not as read off the
// Host header). Cheap checks come first and the replay record last, so a
// proof refused for another reason does not use up its jti.
func (v *Verifier) Check(ctx context.Context, r *http.Request, publicURL string) (*Claims, error) {
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	// RFC 9449 §7.1: Authorization: DPoP <token>; a DPoP-bound token sent
	// as a bearer token is refused below (§7.2), since it has cnf.jkt.
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || token == "" {
		return nil, invalidToken("an Authorization: DPoP header with the access token is required")
	}
	proofs := r.Header.Values("DPoP")
	if len(proofs) != 1 {
		return nil, invalidProof("exactly one DPoP header is required, got %d", len(proofs))
	}
	at, err := v.accessToken(ctx, token, now())
	if err != nil {
		return nil, err
	}
	if !strings.EqualFold(scheme, "DPoP") {
		return nil, invalidToken("the access token is DPoP-bound: send it with the DPoP scheme, not %q (RFC 9449 §7.2)", scheme)
	}
	jkt, jti, iat, err := v.proof(proofs[0], r.Method, publicURL, token, now())
	if err != nil {
		return nil, err
	}
	// RFC 9449 §7.1: the proof's key is the key the token is bound to.
	if subtle.ConstantTimeCompare([]byte(jkt), []byte(at.Cnf.JKT)) != 1 {
		return nil, invalidToken("the DPoP proof is signed with another key than the one the token is bound to")
	}
	if v.replayed(jkt, jti, iat.Add(v.Window+time.Second), now()) {
		return nil, invalidProof("the proof's jti was already used")
	}
	return &Claims{Subject: at.Subject, ClientID: at.ClientID, Scope: at.Scope, JKT: at.Cnf.JKT}, nil
}

// accessToken verifies a JWT access token of the issuer (RFC 9068 §4):
// typ at+jwt, a signature by one of its keys, iss, aud, exp, and cnf.jkt.
func (v *Verifier) accessToken(ctx context.Context, raw string, now time.Time) (*accessClaims, error) {
	tok, err := jwt.ParseSigned(raw, v.TokenAlgs)
	if err != nil {
		return nil, invalidToken("the access token is not a JWT signed with an accepted algorithm")
	}
	h := tok.Headers[0]
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); !strings.EqualFold(typ, "at+jwt") && !strings.EqualFold(typ, "application/at+jwt") {
		return nil, invalidToken("the token's typ is not at+jwt (RFC 9068 §2.1): not an access token")
	}
	key, err := v.key(ctx, h.KeyID)
	if err != nil {
		return nil, err
	}
	var c accessClaims
	if err := tok.Claims(key, &c); err != nil {
		return nil, invalidToken("the access token's signature does not verify")
	}
	if err := c.Claims.ValidateWithLeeway(jwt.Expected{Issuer: v.Issuer, AnyAudience: jwt.Audience{v.Audience}, Time: now}, 5*time.Second); err != nil {
		return nil, invalidToken("the access token is not valid here: %v", err)
	}
	if c.Cnf == nil || c.Cnf.JKT == "" {
		return nil, invalidToken("the access token is not DPoP-bound (no cnf.jkt); this resource accepts DPoP-bound tokens only")
	}
	return &c, nil
}

// key returns the issuer's key kid, refreshing the key set once when it
// is not known (the issuer rotated its keys).
func (v *Verifier) key(ctx context.Context, kid string) (*jose.JSONWebKey, error) {
	for _, refresh := range []bool{false, true} {
		set, err := v.Keys(ctx, refresh)
		if err != nil {
			return nil, fmt.Errorf("resource server: issuer keys: %w", err)
		}
		if ks := set.Key(kid); len(ks) > 0 {
			return &ks[0], nil
		}
	}
	return nil, invalidToken("the access token is signed with a key the issuer does not list")
}

// proof verifies a DPoP proof (RFC 9449 §4.3) for method and target
// presented with access token token, and returns its key's thumbprint, its
// jti and its iat.
func (v *Verifier) proof(raw, method, target, token string, now time.Time) (jkt, jti string, iat time.Time, err error) {
	jws, err := jose.ParseSignedCompact(raw, v.ProofAlgs)
	if err != nil || len(jws.Signatures) != 1 {
		return "", "", time.Time{}, invalidProof("not a JWS with one signature by an accepted asymmetric algorithm")
	}
	h := jws.Signatures[0].Protected
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); !strings.EqualFold(typ, "dpop+jwt") {
		return "", "", time.Time{}, invalidProof("the typ header must be dpop+jwt")
	}
	if h.JSONWebKey == nil || !h.JSONWebKey.Valid() || !h.JSONWebKey.IsPublic() {
		return "", "", time.Time{}, invalidProof("the jwk header must be a public key")
	}
	payload, err := jws.Verify(h.JSONWebKey)
	if err != nil {
		return "", "", time.Time{}, invalidProof("the signature does not verify with the jwk header's key")
	}
	var c proofClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return "", "", time.Time{}, invalidProof("the claims are not a JSON object")
	}
	switch {
	case c.JTI == nil || *c.JTI == "" || len(*c.JTI) > 256:
		return "", "", time.Time{}, invalidProof("jti is missing or too long")
	case c.HTM == nil || *c.HTM != method:
		return "", "", time.Time{}, invalidProof("htm must be %s", method)
	case c.HTU == nil || !sameURL(*c.HTU, target):
		return "", "", time.Time{}, invalidProof("htu must be %s", target)
	case c.IAT == nil:
		return "", "", time.Time{}, invalidProof("iat is missing")
	}
	iat = c.IAT.Time()
	if d := now.Sub(iat); d > v.Window || d < -v.Window {
		return "", "", time.Time{}, invalidProof("iat is more than %s from the server's time", v.Window)
	}
	// RFC 9449 §4.3 12: ath is the hash of the access token presented.
	sum := sha256.Sum256([]byte(token))
	if c.ATH == nil || subtle.ConstantTimeCompare([]byte(*c.ATH), []byte(base64.RawURLEncoding.EncodeToString(sum[:]))) != 1 {
		return "", "", time.Time{}, invalidProof("ath must be the hash of the access token presented")
	}
	tp, err := h.JSONWebKey.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", "", time.Time{}, invalidProof("the jwk header has no thumbprint")
	}
	return base64.RawURLEncoding.EncodeToString(tp), *c.JTI, iat, nil
}

// sameURL compares htu with the resource's URL without query and fragment
// (RFC 9449 §4.3 9), scheme and host case-insensitively.
func sameURL(htu, target string) bool {
	norm := func(s string) (string, bool) {
		u, err := url.Parse(s)
		if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
			return "", false
		}
		return strings.ToLower(u.Scheme) + "://" + strings.ToLower(u.Host) + u.EscapedPath(), true
	}
	a, ok1 := norm(htu)
	b, ok2 := norm(target)
	return ok1 && ok2 && a == b
}

// replayed records the proof (jkt, jti) until until and reports whether it
// was already recorded (RFC 9449 §11.1). The key is per key thumbprint, so
// one client cannot use up another's jti.
func (v *Verifier) replayed(jkt, jti string, until, now time.Time) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.seen == nil {
		v.seen = map[string]time.Time{}
	}
	for k, exp := range v.seen {
		if now.After(exp) {
			delete(v.seen, k)
		}
	}
	k := jkt + "\x00" + jti
	if exp, ok := v.seen[k]; ok && !now.After(exp) {
		return true
	}
	v.seen[k] = until
	return false
}

// errAsAuth returns err as an *Error, or nil for another error.
func errAsAuth(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return nil
}
