package jose

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
)

// ClientAssertionType is the client_assertion_type of private_key_jwt
// (RFC 7523 §2.2).
const ClientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// AssertionPolicy is what VerifyClientAssertion accepts from one client.
type AssertionPolicy struct {
	// ClientID is the client the assertion must be about: its iss and sub.
	ClientID string
	// Issuer is cibaproxy's issuer identifier. CIBA §7.1 makes it an
	// acceptable aud at both the token and the backchannel authentication
	// endpoint; it is accepted with or without a trailing slash, whichever
	// way Issuer is written (Auth0-style clients send "https://<host>/").
	Issuer string
	// Endpoint is the URL of the endpoint being called, the aud RFC 7523
	// §3 names; also accepted, exactly.
	Endpoint string
	// EndpointAliases are, by endpoint URL, the other URLs the same
	// endpoint answers at (the token endpoint's http.token_aliases, such as
	// https://<host>/oauth/token): accepted exactly, as Endpoint is, when
	// Endpoint is their key.
	EndpointAliases map[string][]string
	// Audiences are further accepted aud values, such as the upstream
	// provider's issuer, which discovery publishes as the issuer when
	// cibaproxy federates.
	Audiences []string
	// Algs are the allowed JWS algorithms; empty means DefaultAlgs.
	Algs []string
	// KeySet holds the client's registered keys (required).
	KeySet KeySet
	// Replay records each jti until the assertion expires (required).
	Replay Replay
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// ClockSkew is tolerated on exp, iat and nbf; zero means
	// DefaultClockSkew, a negative value none.
	ClockSkew time.Duration
	// MaxSize is the largest assertion accepted in bytes; zero means
	// DefaultMaxSize.
	MaxSize int
	// MaxLifetime bounds how long after its iat (else its nbf, else now)
	// an assertion may expire, so that none stays usable (and its jti
	// stored) for long; zero or negative means DefaultAssertionMaxLifetime.
	MaxLifetime time.Duration
}

// DefaultAssertionMaxLifetime is the longest a client assertion may be
// valid: exp at most this long after iat, or after nbf without iat, or
// after now (plus the clock skew) without either. RFC 7523 §3 sets no
// bound; an assertion is made for one request, and without a bound a far
// exp keeps its jti in the replay store until then. Keycloak allows 60
// seconds by default (its per-client "max expiration"), SMART Backend
// Services 5 minutes; 5 minutes leaves room for clocks that differ.
const DefaultAssertionMaxLifetime = 5 * time.Minute

// audiences returns the aud values an assertion may carry under p: the
// issuer, with and without its trailing slash, the endpoint and its
// aliases, and the further audiences.
func (p *AssertionPolicy) audiences() []string {
	out := make([]string, 0, 3+len(p.EndpointAliases[p.Endpoint])+len(p.Audiences))
	if p.Issuer != "" {
		out = append(out, p.Issuer)
		if other, ok := strings.CutSuffix(p.Issuer, "/"); ok {
			out = append(out, other)
		} else {
			out = append(out, p.Issuer+"/")
		}
	}
	out = append(out, p.Endpoint)
	if p.Endpoint != "" {
		out = append(out, p.EndpointAliases[p.Endpoint]...)
	}
	return append(out, p.Audiences...)
}

// VerifyClientAssertion authenticates a client by a JWT it signed
// (private_key_jwt): iss and sub are the client_id, aud contains the issuer
// or the endpoint URL, exp is present and not past, nbf and iat (optional)
// are not in the future, exp is at most MaxLifetime (default 5 minutes)
// after iat (see DefaultAssertionMaxLifetime), jti is present; then the
// signature with the client's keys; then the jti is recorded, so an
// assertion is used once.
//
// A client assertion is never a request object (RFC 8725 §3.11, RFC 9101
// §10.8): its typ header, when present, must be client-authentication+jwt
// (TypClientAssertion) or JWT, and it must carry none of the
// authentication request parameters a request object is made of.
// VerifyRequestObject refuses the reverse.
//
// https://www.rfc-editor.org/rfc/rfc7523#section-3
// https://openid.net/specs/openid-connect-core-1_0.html#ClientAuthentication
//
// Failures are ValidationErrors (an expired assertion ErrExpired, a jti
// already used ErrReplay, a replay check that cannot be made
// ErrReplayCheck, an unusable policy ErrPolicy, any other ErrInvalid); the
// caller answers them as invalid_client. Signature failures all get one
// description, whatever the cause (unknown kid, no keys, keys that cannot be
// fetched, a bad signature; the cause is in the error's Err for logs), so a
// caller can verify the assertion of an unknown client with a key set that
// fails and answer exactly as for a known client.
func VerifyClientAssertion(ctx context.Context, raw string, p AssertionPolicy) error {
	c := check{what: TokenClientAssertion, uniform: true}
	if p.ClientID == "" || (p.Issuer == "" && p.Endpoint == "") || p.Replay == nil {
		return c.configError("ClientID, Issuer or Endpoint, and Replay are required")
	}
	l := newLimits(p.Now, p.ClockSkew, p.MaxSize)
	t, e := c.open(raw, p.Algs, false, l)
	if e != nil {
		return e
	}
	if e := c.checkTyp(t, TypClientAssertion); e != nil {
		return e
	}
	if t.std.Issuer != p.ClientID {
		return c.fail("iss", "iss %q is not the client_id %q", clip(t.std.Issuer), p.ClientID)
	}
	if t.std.Subject != p.ClientID {
		return c.fail("sub", "sub %q is not the client_id %q", clip(t.std.Subject), p.ClientID)
	}
	for _, name := range requestParameters {
		if _, ok := t.claims[name]; ok {
			return c.fail(name, "claim %q is an authentication request parameter: this JWT is a request object, not a client assertion (RFC 8725 §3.11)", name)
		}
	}
	if e := c.checkAud(t, p.audiences()...); e != nil {
		return e
	}
	if e := c.checkExp(t, l, true); e != nil {
		return e
	}
	if e := c.checkNotFuture("nbf", t.std.NotBefore, l, false); e != nil {
		return e
	}
	if e := c.checkNotFuture("iat", t.std.IssuedAt, l, false); e != nil {
		return e
	}
	if e := c.checkAssertionLifetime(t, l, p.MaxLifetime); e != nil {
		return e
	}
	if e := c.checkJTI(t); e != nil {
		return e
	}
	if e := c.verify(ctx, raw, t, p.KeySet, "", fmt.Sprintf("client %q", p.ClientID)); e != nil {
		return e
	}
	if err := p.Replay.Seen(ctx, replayKey("client_assertion", p.ClientID, t.std.ID), t.until(l)); err != nil {
		return c.replayError(t.std.ID, err)
	}
	return nil
}

// requestParameters are the claims of a request object that no client
// assertion carries: the authentication request parameters of CIBA §7.1
// and the OAuth request parameters of RFC 9101 §4. An assertion carrying
// one was made as a request object, and is refused.
var requestParameters = []string{
	"scope", "client_notification_token", "acr_values", "login_hint_token", "id_token_hint",
	"login_hint", "binding_message", "user_code", "requested_expiry",
	"response_type", "redirect_uri", "state", "nonce",
}

// checkAssertionLifetime checks that the assertion t expires at most
// maxLife (DefaultAssertionMaxLifetime when not positive) after its iat, or
// its nbf when it has no iat. Without either, exp may be at most maxLife
// plus the clock skew from now (the client's clock may be ahead).
func (c check) checkAssertionLifetime(t *token, l limits, maxLife time.Duration) *ValidationError {
	if maxLife <= 0 {
		maxLife = DefaultAssertionMaxLifetime
	}
	exp := t.std.Expiry.Time()
	var from string
	var start time.Time
	switch {
	case t.std.IssuedAt != nil:
		from, start = "iat", t.std.IssuedAt.Time()
	case t.std.NotBefore != nil:
		from, start = "nbf", t.std.NotBefore.Time()
	default:
		if d := exp.Sub(l.now); d > maxLife+l.skew {
			return c.fail("exp", "exp is %s from now and there is no iat, over the limit of %s (plus %s clock skew)", d, maxLife, l.skew)
		}
		return nil
	}
	if d := exp.Sub(start); d > maxLife {
		return c.fail("exp", "exp is %s after %s, over the limit of %s", d, from, maxLife)
	}
	return nil
}

// AssertionSubject returns the sub claim of a client assertion WITHOUT
// verifying it, so the caller can look up the client whose keys will verify
// it with VerifyClientAssertion. Nothing else may be concluded from it.
// The assertion must parse as a compact JWS of an asymmetric algorithm no
// larger than DefaultMaxSize; failures are ErrInvalid.
func AssertionSubject(raw string) (string, error) {
	c := check{what: TokenClientAssertion}
	if raw == "" || len(raw) > DefaultMaxSize {
		return "", c.fail("", "missing or over %d bytes", DefaultMaxSize)
	}
	t, err := jwt.ParseSigned(raw, asymmetricAlgs())
	if err != nil {
		e := c.fail("", "not a JWS in compact serialization with an asymmetric alg")
		e.Err = err
		return "", e
	}
	var std jwt.Claims
	if err := t.UnsafeClaimsWithoutVerification(&std); err != nil {
		e := c.fail("", "the claims are not a valid JWT claims set")
		e.Err = err
		return "", e
	}
	if std.Subject == "" {
		return "", c.fail("sub", "sub is missing")
	}
	return std.Subject, nil
}
