package jose

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	gojose "github.com/go-jose/go-jose/v4"
	gojson "github.com/go-jose/go-jose/v4/json"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Defaults of the policies.
const (
	// DefaultClockSkew is the clock difference tolerated on exp, iat and nbf.
	DefaultClockSkew = 60 * time.Second
	// DefaultMaxSize is the largest token accepted, in bytes of its compact
	// serialization.
	DefaultMaxSize = 16 << 10
	// MinHS256SecretLen is the shortest client secret usable as an HS256 key,
	// in bytes (RFC 7518 §3.2: a key at least as long as the hash).
	MinHS256SecretLen = 32
	// maxJTI bounds the length of a jti; it becomes a store key.
	maxJTI = 256
)

// DefaultAlgs returns the signature algorithms accepted when a policy names
// none: RS256, PS256 and ES256, the asymmetric algorithms CIBA §7.1.1 and
// FAPI ask a client to be able to use.
func DefaultAlgs() []string { return []string{"RS256", "PS256", "ES256"} }

// check names the token being verified and how its failures are told.
type check struct {
	what string // TokenRequestObject, TokenClientAssertion, ...
	// uniform gives every signature failure one description, so it does
	// not tell an unknown kid, a missing key set or a bad signature apart
	// (client authentication must not reveal which clients exist).
	uniform bool
}

// fail returns an ErrInvalid error of c about field ("" for the token as
// a whole).
func (c check) fail(field, format string, args ...any) *ValidationError {
	return &ValidationError{Token: c.what, Kind: ErrInvalid, Field: field, Reason: fmt.Sprintf(format, args...)}
}

// expired returns the ErrExpired error of c.
func (c check) expired(format string, args ...any) *ValidationError {
	return &ValidationError{Token: c.what, Kind: ErrExpired, Field: "exp", Reason: fmt.Sprintf(format, args...)}
}

// configError reports a policy that cannot be applied: a bug in the
// caller (ErrPolicy).
func (c check) configError(format string, args ...any) *ValidationError {
	return &ValidationError{Token: c.what, Kind: ErrPolicy, Reason: "policy: " + fmt.Sprintf(format, args...)}
}

// token is a compact JWS whose claims are decoded but whose signature has
// not been verified yet.
type token struct {
	jws     *gojose.JSONWebSignature
	alg     string
	kid     string
	typ     string // the typ header, "" when absent
	badTyp  bool   // a typ header that is not a string
	payload []byte
	std     jwt.Claims
	claims  map[string]any
}

// limits are the clock and size settings shared by every policy.
type limits struct {
	now     time.Time
	skew    time.Duration
	maxSize int
}

func newLimits(now func() time.Time, skew time.Duration, maxSize int) limits {
	l := limits{now: time.Now(), skew: skew, maxSize: maxSize}
	if now != nil {
		l.now = now()
	}
	switch {
	case l.skew == 0:
		l.skew = DefaultClockSkew
	case l.skew < 0:
		l.skew = 0
	}
	if l.maxSize <= 0 {
		l.maxSize = DefaultMaxSize
	}
	return l
}

// open is the first step of every verification: it checks the policy's
// algorithms (validAlgs) and parses raw as a JWS signed with one of them
// under l (parse).
func (c check) open(raw string, algs []string, allowHS256 bool, l limits) (*token, *ValidationError) {
	valid, e := c.validAlgs(algs, allowHS256)
	if e != nil {
		return nil, e
	}
	return c.parse(raw, l, valid)
}

// parse checks the size of raw, parses it as a compact JWS whose alg is one
// of algs, and decodes its claims: registered claims strictly (member names
// are case-sensitive, duplicate members are refused), all claims with
// json.Number for numbers.
func (c check) parse(raw string, l limits, algs []string) (*token, *ValidationError) {
	if raw == "" {
		return nil, c.fail("", "is empty")
	}
	if len(raw) > l.maxSize {
		return nil, c.fail("", "is %d bytes, over the limit of %d", len(raw), l.maxSize)
	}
	sigAlgs := make([]gojose.SignatureAlgorithm, len(algs))
	for i, a := range algs {
		sigAlgs[i] = gojose.SignatureAlgorithm(a)
	}
	jws, err := gojose.ParseSignedCompact(raw, sigAlgs)
	if err != nil {
		var ua *gojose.ErrUnexpectedSignatureAlgorithm
		if errors.As(err, &ua) {
			e := c.fail("alg", "alg %q is not allowed (allowed: %s)", clip(string(ua.Got)), strings.Join(algs, ", "))
			e.Err = err
			return nil, e
		}
		e := c.fail("", "is not a JWS in compact serialization")
		e.Err = err
		return nil, e
	}
	if len(jws.Signatures) != 1 {
		return nil, c.fail("", "must carry exactly one signature")
	}
	h := jws.Signatures[0].Header
	t := &token{jws: jws, alg: h.Algorithm, kid: h.KeyID, payload: jws.UnsafePayloadWithoutVerification()}
	if v, ok := h.ExtraHeaders[gojose.HeaderType]; ok {
		t.typ, ok = v.(string)
		t.badTyp = !ok
	}
	if err := gojson.Unmarshal(t.payload, &t.std); err != nil {
		e := c.fail("", "the claims are not a valid JWT claims set (%v)", err)
		e.Err = err
		return nil, e
	}
	dec := json.NewDecoder(bytes.NewReader(t.payload))
	dec.UseNumber()
	if err := dec.Decode(&t.claims); err != nil || t.claims == nil {
		e := c.fail("", "the claims are not a JSON object")
		e.Err = err
		return nil, e
	}
	return t, nil
}

// verify checks the signature of t with ks, or with secret for HS256, and
// that the verified payload is the one whose claims were checked. owner
// names the signer in descriptions. With c.uniform, every failure gets the
// same description (the cause stays in Err, for logs).
func (c check) verify(ctx context.Context, raw string, t *token, ks KeySet, secret, owner string) *ValidationError {
	var payload []byte
	var err error
	switch {
	case t.alg == string(gojose.HS256) && secret == "":
		err = errors.New("no secret to verify HS256")
	case t.alg == string(gojose.HS256) && len(secret) < MinHS256SecretLen:
		return c.configError("the secret of %s is too short for HS256", owner)
	case t.alg == string(gojose.HS256):
		payload, err = t.jws.Verify([]byte(secret))
	case ks == nil:
		err = errNoKeys
	default:
		payload, err = ks.Verify(ctx, raw)
	}
	if err == nil {
		if !bytes.Equal(payload, t.payload) {
			return c.configError("the key set returned another payload than the token's")
		}
		return nil
	}
	var e *ValidationError
	switch {
	case c.uniform:
		e = c.fail("", "the signature does not verify with the keys of %s", owner)
	case errors.Is(err, errNoKeys):
		e = c.fail("", "%s has no keys to verify %s", owner, t.alg)
	case t.alg == string(gojose.HS256) && secret == "":
		e = c.fail("", "%s has no secret to verify HS256", owner)
	case errors.Is(err, ErrUnknownKey) && t.kid != "":
		e = c.fail("", "no key of %s has kid %q for alg %s", owner, clip(t.kid), t.alg)
	case errors.Is(err, ErrUnknownKey):
		e = c.fail("", "no key of %s fits alg %s", owner, t.alg)
	case errors.Is(err, ErrKeysUnavailable):
		e = c.fail("", "the keys of %s could not be fetched", owner)
	default:
		e = c.fail("", "the signature does not verify with the keys of %s", owner)
	}
	e.Err = err
	return e
}

// Explicit types (RFC 8725 §3.11) of the JWTs a client signs, as the typ
// header names them: a request object (RFC 9101 §4) and a client assertion
// (draft-ietf-oauth-rfc7523bis). A JWT that names one of them is accepted
// in that role only.
const (
	TypRequestObject   = "oauth-authz-req+jwt"
	TypClientAssertion = "client-authentication+jwt"
)

// checkTyp checks that the typ header of t, when present, is "JWT" or
// want: a JWT explicitly typed for another role is refused (RFC 8725
// §3.11). Media types compare case-insensitively and may carry the
// "application/" prefix (RFC 7515 §4.1.9).
func (c check) checkTyp(t *token, want string) *ValidationError {
	switch {
	case t.badTyp:
		return c.fail("typ", "the typ header must be a string")
	case t.typ == "":
		return nil
	}
	if typ := t.mediaType(); typ == "jwt" || typ == want {
		return nil
	}
	return c.fail("typ", "typ %q is not %q (or JWT): this JWT was made for another use (RFC 8725 §3.11)", clip(t.typ), want)
}

// mediaType is the typ header of t in lower case without "application/"
// (RFC 7515 §4.1.9); "" when absent.
func (t *token) mediaType() string {
	return strings.TrimPrefix(strings.ToLower(t.typ), "application/")
}

// errNoKeys: the policy has no key set.
var errNoKeys = errors.New("jose: no keys")

// checkJTI checks that t has a usable jti.
func (c check) checkJTI(t *token) *ValidationError {
	switch {
	case t.std.ID == "":
		return c.fail("jti", "jti is missing")
	case len(t.std.ID) > maxJTI:
		return c.fail("jti", "jti is %d characters, over the limit of %d", len(t.std.ID), maxJTI)
	}
	return nil
}

// checkExp checks that exp is present (if required) and not past.
func (c check) checkExp(t *token, l limits, required bool) *ValidationError {
	if t.std.Expiry == nil {
		if required {
			return c.fail("exp", "exp is missing")
		}
		return nil
	}
	if exp := t.std.Expiry.Time(); l.now.After(exp.Add(l.skew)) {
		return c.expired("expired at %s", stamp(exp))
	}
	return nil
}

// checkNotFuture checks that the time claim name (iat or nbf) is present
// (if required) and not later than now plus the skew.
func (c check) checkNotFuture(name string, d *jwt.NumericDate, l limits, required bool) *ValidationError {
	if d == nil {
		if required {
			return c.fail(name, "%s is missing", name)
		}
		return nil
	}
	if tm := d.Time(); tm.After(l.now.Add(l.skew)) {
		return c.fail(name, "%s %s is in the future", name, stamp(tm))
	}
	return nil
}

// checkAud checks that aud contains one of accepted (empty values ignored).
func (c check) checkAud(t *token, accepted ...string) *ValidationError {
	if len(t.std.Audience) == 0 {
		return c.fail("aud", "aud is missing")
	}
	for _, a := range accepted {
		if a != "" && t.std.Audience.Contains(a) {
			return nil
		}
	}
	var want []string
	for _, a := range accepted {
		if a != "" {
			want = append(want, fmt.Sprintf("%q", a))
		}
	}
	return c.fail("aud", "aud %s does not contain %s", clipList(t.std.Audience), strings.Join(want, " or "))
}

// maxQuoted is how much of a value taken from a token an error description
// quotes.
const maxQuoted = 80

// clip shortens a value taken from a token for an error description.
func clip(s string) string {
	if len(s) <= maxQuoted {
		return s
	}
	return strings.ToValidUTF8(s[:maxQuoted], "") + "…"
}

// clipList formats a list of values taken from a token for an error
// description.
func clipList(list []string) string {
	const maxItems = 5
	var b strings.Builder
	b.WriteByte('[')
	for i, s := range list {
		if i == maxItems {
			fmt.Fprintf(&b, " …%d more", len(list)-maxItems)
			break
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%q", clip(s))
	}
	b.WriteByte(']')
	return b.String()
}

// until is how long the jti of t must be remembered: as long as the token
// could still be accepted.
func (t *token) until(l limits) time.Time {
	return t.std.Expiry.Time().Add(l.skew)
}

// stamp formats a time for an error description.
func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// validAlgs returns the algorithms a policy allows: algs, or DefaultAlgs
// when empty, each an asymmetric algorithm this package verifies, or HS256
// when allowHS256 is set.
func (c check) validAlgs(algs []string, allowHS256 bool) ([]string, *ValidationError) {
	if len(algs) == 0 {
		algs = DefaultAlgs()
		if allowHS256 {
			algs = append(algs, string(gojose.HS256))
		}
	}
	for _, a := range algs {
		switch {
		case isAsymmetric(a):
		case a == string(gojose.HS256) && allowHS256:
		case a == string(gojose.HS256):
			return nil, c.configError("HS256 is listed but not allowed")
		default:
			return nil, c.configError("alg %q is not supported", a)
		}
	}
	return algs, nil
}
