package jose

import (
	"context"
	"fmt"
	"time"
)

// RequestObjectPolicy is what VerifyRequestObject accepts from one client.
type RequestObjectPolicy struct {
	// ClientID is the authenticated client; the request object's iss must
	// be it (CIBA §7.1.1).
	ClientID string
	// Issuer is cibaproxy's issuer identifier, the aud CIBA §7.1.1 asks for.
	Issuer string
	// Audiences are further accepted aud values, such as the URL of the
	// backchannel authentication endpoint (accepted by WSO2 and others).
	Audiences []string

	// Algs are the allowed JWS algorithms; empty means DefaultAlgs, plus
	// HS256 when AllowHS256 is set. A client that registered
	// backchannel_authentication_request_signing_alg (CIBA §4) gets exactly
	// that one.
	Algs []string
	// AllowHS256 accepts request objects MACed with HS256 using Secret as
	// the key. CIBA §7.1.1 requires an asymmetric signature: this is a
	// per-client legacy switch, never to be set under FAPI.
	AllowHS256 bool
	// KeySet verifies the asymmetric signatures: the client's registered
	// keys. Nil when the client has none.
	KeySet KeySet
	// Secret is the client secret, the HS256 key when AllowHS256 is set.
	Secret string

	// Replay records each jti until the request object expires (required).
	Replay Replay
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// ClockSkew is tolerated on exp, iat and nbf; zero means
	// DefaultClockSkew, a negative value none.
	ClockSkew time.Duration
	// MaxSize is the largest request object accepted in bytes; zero means
	// DefaultMaxSize.
	MaxSize int
	// MaxLifetime bounds exp - nbf and how old nbf may be, so that no
	// request object stays usable (and its jti stored) for long; zero or
	// negative means DefaultRequestObjectMaxLifetime.
	MaxLifetime time.Duration
}

// DefaultRequestObjectMaxLifetime is the longest a request object of any
// client may be valid: exp at most this long after nbf, and nbf at most
// this old. It is the bound FAPI sets (FAPI 1.0 Advanced §5.2.2-13,
// FAPI-CIBA §5.2.2), applied to every client: CIBA §7.1.1 sets none, and
// without one a far exp keeps the request object's jti in the replay store
// until then.
const DefaultRequestObjectMaxLifetime = 60 * time.Minute

// VerifyRequestObject verifies a signed authentication request (CIBA Core
// 1.0 §7.1.1) and returns its claims, which are the authentication request
// parameters. Numbers are json.Number, so requested_expiry may be a number
// or a string and the caller decides.
//
// The checks run cheapest first: size; parsing with the allowed algorithms
// only (so "none" and a JWS MACed with HS256 over a public key are refused
// before any key is looked at); iss is the client; aud names the issuer (or
// one of Audiences); exp is present and not past; iat and nbf are present
// and not in the future; exp is at most MaxLifetime (default 60 minutes)
// after nbf and nbf at most that old; jti is present;
// then the signature; and last the jti is recorded, so a token that fails
// any check never consumes its jti.
//
// A request object is never a client assertion, and the rules keep the two
// apart whatever the client signs (RFC 9101 §10.8, RFC 8725 §3.11): the typ
// header, when present, must be oauth-authz-req+jwt (TypRequestObject) or
// JWT, and sub must not be the client_id, which is what a client
// assertion's sub is (RFC 7523 §3). VerifyClientAssertion refuses the
// reverse.
//
// https://openid.net/specs/openid-client-initiated-backchannel-authentication-core-1_0.html#signed_auth_request
//
// Every failure is a ValidationError whose description names the claim and
// the expected value: an expired request object ErrExpired, a jti already
// used ErrReplay, a replay check that cannot be made ErrReplayCheck, an
// unusable policy ErrPolicy, any other ErrInvalid. CIBA §13 answers the
// client's faults as invalid_request.
func VerifyRequestObject(ctx context.Context, raw string, p RequestObjectPolicy) (map[string]any, error) {
	c := check{what: TokenRequestObject}
	if p.ClientID == "" || p.Issuer == "" || p.Replay == nil {
		return nil, c.configError("ClientID, Issuer and Replay are required")
	}
	l := newLimits(p.Now, p.ClockSkew, p.MaxSize)
	t, e := c.open(raw, p.Algs, p.AllowHS256, l)
	if e != nil {
		return nil, e
	}
	if e := c.checkTyp(t, TypRequestObject); e != nil {
		return nil, e
	}
	if t.std.Issuer != p.ClientID {
		return nil, c.fail("iss", "iss %q is not the client_id %q", clip(t.std.Issuer), p.ClientID)
	}
	if t.std.Subject == p.ClientID {
		return nil, c.fail("sub", "sub must not be the client_id %q: a JWT with iss = sub = client_id is a client assertion, not a request object (RFC 9101 §10.8)", p.ClientID)
	}
	if e := c.checkAud(t, append([]string{p.Issuer}, p.Audiences...)...); e != nil {
		return nil, e
	}
	if e := c.checkExp(t, l, true); e != nil {
		return nil, e
	}
	if e := c.checkNotFuture("iat", t.std.IssuedAt, l, true); e != nil {
		return nil, e
	}
	if e := c.checkNotFuture("nbf", t.std.NotBefore, l, true); e != nil {
		return nil, e
	}
	maxLife := p.MaxLifetime
	if maxLife <= 0 {
		maxLife = DefaultRequestObjectMaxLifetime
	}
	exp, nbf := t.std.Expiry.Time(), t.std.NotBefore.Time()
	if d := exp.Sub(nbf); d > maxLife {
		return nil, c.fail("exp", "exp is %s after nbf, over the limit of %s", d, maxLife)
	}
	if nbf.Before(l.now.Add(-maxLife)) {
		return nil, c.fail("nbf", "nbf %s is more than %s old", stamp(nbf), maxLife)
	}
	if e := c.checkJTI(t); e != nil {
		return nil, e
	}
	if e := c.verify(ctx, raw, t, p.KeySet, p.Secret, fmt.Sprintf("client %q", p.ClientID)); e != nil {
		return nil, e
	}
	if err := p.Replay.Seen(ctx, replayKey("request_object", p.ClientID, t.std.ID), t.until(l)); err != nil {
		return nil, c.replayError(t.std.ID, err)
	}
	return t.claims, nil
}
