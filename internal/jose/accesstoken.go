package jose

import (
	"context"
	"fmt"
	"time"
)

// Explicit types (RFC 8725 §3.11) of the JWTs cibaproxy itself signs: an
// access token (RFC 9068 §2.1) and an ID token (typ "JWT", OIDC Core §2 and
// the usage of most providers). Every JWT the issuer signs names one, so
// that none can be taken for another: an ID token is never accepted where
// an access token is expected, nor an access token as an id_token_hint.
const (
	TypAccessToken = "at+jwt"
	TypIDToken     = "JWT"
)

// TokenAccessToken names an access token in a ValidationError.
const TokenAccessToken = "access token"

// AccessTokenPolicy is what VerifyAccessToken accepts: a JWT access token
// (RFC 9068) of one issuer.
type AccessTokenPolicy struct {
	// Issuer is the issuer identifier; iss must be it, and aud must
	// contain it (the access tokens of the local issuer are for its own
	// resources: userinfo, and resource servers that trust the issuer).
	Issuer string
	// KeySet holds the issuer's keys (required).
	KeySet KeySet
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// ClockSkew is tolerated on exp and iat; zero means DefaultClockSkew,
	// a negative value none. Introspection and userinfo use none: the
	// issuer's clock is the one that set exp.
	ClockSkew time.Duration
	// MaxSize is the largest token accepted in bytes; zero means
	// DefaultMaxSize.
	MaxSize int
}

// AccessToken is a verified JWT access token.
type AccessToken struct {
	// Claims are all its claims, numbers as json.Number.
	Claims map[string]any
	// Subject, ClientID, JTI and Scope are sub, client_id, jti and scope.
	Subject, ClientID, JTI, Scope string
	// Expiry and IssuedAt are exp and iat.
	Expiry, IssuedAt time.Time
}

// VerifyAccessToken verifies a JWT access token of the issuer following
// RFC 9068 §4: typ must be "at+jwt" (application/at+jwt), which no other
// token of the issuer carries; alg one of the asymmetric algorithms; iss
// the Issuer; aud containing it; exp present and not past; iat present and
// not in the future; sub, client_id and jti present; then the signature.
// Failures are ErrInvalid, ErrExpired for a token past its exp, or
// ErrPolicy for an unusable policy.
//
// https://www.rfc-editor.org/rfc/rfc9068#section-4
func VerifyAccessToken(ctx context.Context, raw string, p AccessTokenPolicy) (*AccessToken, error) {
	c := check{what: TokenAccessToken}
	if p.Issuer == "" || p.KeySet == nil {
		return nil, c.configError("Issuer and KeySet are required")
	}
	algs := make([]string, 0, len(asymmetricAlgs()))
	for _, a := range asymmetricAlgs() {
		algs = append(algs, string(a))
	}
	l := newLimits(p.Now, p.ClockSkew, p.MaxSize)
	t, e := c.parse(raw, l, algs)
	if e != nil {
		return nil, e
	}
	if t.badTyp || t.mediaType() != TypAccessToken {
		return nil, c.fail("typ", "typ must be %q (RFC 9068 §2.1)", TypAccessToken)
	}
	if t.std.Issuer != p.Issuer {
		return nil, c.fail("iss", "iss %q is not the issuer %q", clip(t.std.Issuer), p.Issuer)
	}
	if e := c.checkAud(t, p.Issuer); e != nil {
		return nil, e
	}
	if e := c.checkExp(t, l, true); e != nil {
		return nil, e
	}
	if e := c.checkNotFuture("iat", t.std.IssuedAt, l, true); e != nil {
		return nil, e
	}
	if e := c.checkJTI(t); e != nil {
		return nil, e
	}
	at := &AccessToken{Claims: t.claims, Subject: t.std.Subject, JTI: t.std.ID,
		Expiry: t.std.Expiry.Time(), IssuedAt: t.std.IssuedAt.Time()}
	at.ClientID, _ = t.claims["client_id"].(string)
	at.Scope, _ = t.claims["scope"].(string)
	switch {
	case at.Subject == "":
		return nil, c.fail("sub", "sub is missing")
	case at.ClientID == "":
		return nil, c.fail("client_id", "client_id is missing")
	}
	if e := c.verify(ctx, raw, t, p.KeySet, "", fmt.Sprintf("issuer %q", p.Issuer)); e != nil {
		return nil, e
	}
	return at, nil
}
