package jose

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	gojose "github.com/go-jose/go-jose/v4"
)

// HintTokenPolicy is what VerifyLoginHintToken accepts for one client.
type HintTokenPolicy struct {
	// ClientID is the requesting client. A login_hint_token whose iss is
	// the client_id is verified with ClientKeys.
	ClientID string
	// ClientKeys holds the requesting client's keys; nil if it has none.
	ClientKeys KeySet
	// TrustedIssuers maps the iss of login_hint_tokens minted by others
	// (an identity hub, the upstream) to their keys. The research notes
	// this trust list is what implementations lack (CIBA §7.1 leaves the
	// token's format open).
	TrustedIssuers map[string]KeySet
	// Issuer is cibaproxy's issuer identifier. A token with an aud must
	// name it; a token without aud is accepted.
	Issuer string
	// Algs are the allowed JWS algorithms; empty means DefaultAlgs.
	Algs []string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// ClockSkew is tolerated on exp and nbf; zero means DefaultClockSkew, a
	// negative value none.
	ClockSkew time.Duration
	// MaxSize is the largest token accepted in bytes; zero means
	// DefaultMaxSize.
	MaxSize int
}

// VerifyLoginHintToken verifies a login_hint_token (CIBA §7.1) signed by
// the requesting client itself (iss = client_id) or by a trusted issuer, and
// returns its claims; HintSubject then tells whom it names.
//
// Checks, cheapest first: size; the allowed algorithms; a typ header, if
// any, is not that of a request object or a client assertion; iss is the client
// or a trusted issuer; exp, if present, is not past; nbf, if present, is not
// in the future; aud, if present, names the Issuer; then the signature. An
// expired token is ErrExpired (which CIBA §13 answers as
// expired_login_hint_token); every other failure is ErrInvalid, or
// ErrPolicy for an unusable policy.
//
// https://openid.net/specs/openid-client-initiated-backchannel-authentication-core-1_0.html#auth_request
func VerifyLoginHintToken(ctx context.Context, raw string, p HintTokenPolicy) (map[string]any, error) {
	c := check{what: TokenLoginHint}
	if p.ClientID == "" {
		return nil, c.configError("ClientID is required")
	}
	l := newLimits(p.Now, p.ClockSkew, p.MaxSize)
	t, e := c.open(raw, p.Algs, false, l)
	if e != nil {
		return nil, e
	}
	// A request object or a client assertion of the client is signed with
	// the same key; one typed as such is no hint (RFC 8725 §3.11). A typ
	// that is no string types nothing it can be told apart by.
	if e := c.ownRole(t, ""); e != nil {
		return nil, e
	}
	var ks KeySet
	var owner string
	switch iss := t.std.Issuer; {
	case iss == "":
		return nil, c.fail("iss", "iss is missing")
	case iss == p.ClientID:
		ks, owner = p.ClientKeys, fmt.Sprintf("client %q", p.ClientID)
		if ks == nil {
			return nil, c.fail("iss", "client %q has no registered keys to verify it", p.ClientID)
		}
	default:
		ks, owner = p.TrustedIssuers[iss], fmt.Sprintf("issuer %q", iss)
		if ks == nil {
			return nil, c.fail("iss", "issuer %q is neither the client nor a trusted issuer", clip(iss))
		}
	}
	if e := c.checkExp(t, l, false); e != nil {
		return nil, e
	}
	if e := c.checkNotFuture("nbf", t.std.NotBefore, l, false); e != nil {
		return nil, e
	}
	if len(t.std.Audience) > 0 && p.Issuer != "" {
		if e := c.checkAud(t, p.Issuer); e != nil {
			return nil, e
		}
	}
	if e := c.verify(ctx, raw, t, ks, "", owner); e != nil {
		return nil, e
	}
	return t.claims, nil
}

// IDTokenHintPolicy is what VerifyIDTokenHint accepts.
type IDTokenHintPolicy struct {
	// Issuer is the issuer of the ID tokens accepted as hints: cibaproxy
	// itself, or the upstream OP when cibaproxy relays its tokens.
	Issuer string
	// KeySet holds that issuer's keys (required).
	KeySet KeySet
	// ClientID is the requesting client; the token's aud must contain it.
	ClientID string
	// Algs are the allowed JWS algorithms; empty means DefaultAlgs.
	Algs []string
	// MaxSize is the largest token accepted in bytes; zero means
	// DefaultMaxSize.
	MaxSize int
}

// VerifyIDTokenHint verifies an id_token_hint (CIBA §7.1): an ID token the
// Issuer gave the requesting client. iss must be the Issuer, aud must
// contain the client_id (and azp, if present, be it), sub must be present,
// and the signature must verify with the Issuer's keys. The token may have
// expired: it is a hint about a past authentication, not a credential (OIDC
// Core §3.1.2.1), but its signature is never skipped. Failures are
// ErrInvalid, or ErrPolicy for an unusable policy.
//
// https://openid.net/specs/openid-client-initiated-backchannel-authentication-core-1_0.html#auth_request
func VerifyIDTokenHint(ctx context.Context, raw string, p IDTokenHintPolicy) (map[string]any, error) {
	c := check{what: TokenIDTokenHint}
	if p.Issuer == "" || p.ClientID == "" || p.KeySet == nil {
		return nil, c.configError("Issuer, ClientID and KeySet are required")
	}
	l := newLimits(nil, 0, p.MaxSize)
	t, e := c.open(raw, p.Algs, false, l)
	if e != nil {
		return nil, e
	}
	// An access token (or another JWT typed for a role) of the issuer is
	// no ID token, whatever its claims (RFC 8725 §3.11).
	if e := c.ownRole(t, " than an ID token"); e != nil {
		return nil, e
	}
	if t.std.Issuer != p.Issuer {
		return nil, c.fail("iss", "iss %q is not the issuer %q", clip(t.std.Issuer), p.Issuer)
	}
	if !t.std.Audience.Contains(p.ClientID) {
		return nil, c.fail("aud", "aud %s does not contain the client_id %q", clipList(t.std.Audience), p.ClientID)
	}
	if azp, ok := t.claims["azp"]; ok && azp != p.ClientID {
		return nil, c.fail("azp", "azp %q is not the client_id %q", clip(fmt.Sprint(azp)), p.ClientID)
	}
	if t.std.Subject == "" {
		return nil, c.fail("sub", "sub is missing")
	}
	if e := c.verify(ctx, raw, t, p.KeySet, "", fmt.Sprintf("issuer %q", p.Issuer)); e != nil {
		return nil, e
	}
	return t.claims, nil
}

// ownRole refuses a token whose typ header is not a string or names
// another role of JWT (otherRole): it was made for another use (RFC 8725
// §3.11); than, when not empty, names this use in the message.
func (c check) ownRole(t *token, than string) *ValidationError {
	if t.badTyp {
		return c.fail("typ", "the typ header must be a string")
	}
	if otherRole(t.mediaType()) {
		return c.fail("typ", "typ %q: this JWT was made for another use%s (RFC 8725 §3.11)", clip(t.typ), than)
	}
	return nil
}

// otherRole reports whether typ, a media type as token.mediaType gives it,
// is the explicit type of a JWT made for a role that is neither an ID
// token nor a login_hint_token: a request object, a client assertion, an
// access token (RFC 9068), a DPoP proof (RFC 9449), a logout token (OIDC
// Back-Channel Logout) or a signed introspection response (RFC 9701).
func otherRole(typ string) bool {
	switch typ {
	case TypRequestObject, TypClientAssertion, TypAccessToken, "dpop+jwt", "logout+jwt", "token-introspection+jwt":
		return true
	}
	return false
}

// Kinds of user identifier HintSubject returns.
const (
	// HintSub: the subject identifier at the token's issuer, from "sub".
	HintSub = "sub"
	// HintEmail: an e-mail address (RFC 9493 §3.2.2).
	HintEmail = "email"
	// HintPhoneNumber: an E.164 telephone number (RFC 9493 §3.2.5).
	HintPhoneNumber = "phone_number"
	// HintOpaque: an opaque identifier (RFC 9493 §3.2.4).
	HintOpaque = "opaque"
	// HintIssSub: a subject at a named issuer (RFC 9493 §3.2.3).
	HintIssSub = "iss_sub"
)

// SubjectID is the user a login_hint_token names.
type SubjectID struct {
	// Kind is one of HintSub, HintEmail, HintPhoneNumber, HintOpaque,
	// HintIssSub.
	Kind string
	// Value is the identifier: the sub, e-mail address, phone number or
	// opaque id.
	Value string
	// Issuer is the issuer that assigned Value, for HintIssSub only.
	Issuer string
}

// HintSubjectID returns the user named by the claims of a login_hint_token:
// its "sub_id" subject identifier (RFC 9493) when present, else its "sub".
// Supported formats are email, phone_number (and the draft name "phone",
// used by the CIBA §7.1 example), opaque and iss_sub. Failures are
// ErrInvalid errors of a TokenLoginHint.
//
// https://www.rfc-editor.org/rfc/rfc9493#section-3
func HintSubjectID(claims map[string]any) (SubjectID, error) {
	c := check{what: TokenLoginHint}
	raw, ok := claims["sub_id"]
	if !ok {
		sub, _ := claims["sub"].(string)
		if sub == "" {
			return SubjectID{}, c.fail("", "names no user: sub_id and sub are missing")
		}
		return SubjectID{Kind: HintSub, Value: sub}, nil
	}
	id, ok := raw.(map[string]any)
	if !ok {
		return SubjectID{}, c.fail("sub_id", "sub_id is not a JSON object")
	}
	format, _ := id["format"].(string)
	member := func(name string) (string, *ValidationError) {
		v, _ := id[name].(string)
		if v == "" {
			return "", c.fail("sub_id", "sub_id of format %q has no %q", clip(format), name)
		}
		return v, nil
	}
	var s SubjectID
	var e *ValidationError
	switch format {
	case "":
		return SubjectID{}, c.fail("sub_id", "sub_id has no format")
	case "iss_sub":
		s.Kind = HintIssSub
		if s.Issuer, e = member("iss"); e == nil {
			s.Value, e = member("sub")
		}
	default:
		kind, name, ok := oneMemberFormat(format)
		if !ok {
			return SubjectID{}, c.fail("sub_id", "sub_id format %q is not supported (email, phone_number, opaque, iss_sub)", clip(format))
		}
		s.Kind = kind
		s.Value, e = member(name)
	}
	if e != nil {
		return SubjectID{}, e
	}
	return s, nil
}

// oneMemberFormat returns the hint kind of a sub_id format whose value is
// one member (RFC 9493 §3), and that member's name; false for any other.
// "phone" is the name drafts gave phone_number.
func oneMemberFormat(format string) (kind, member string, ok bool) {
	switch format {
	case "email":
		return HintEmail, "email", true
	case "phone_number", "phone":
		return HintPhoneNumber, format, true
	case "opaque":
		return HintOpaque, "id", true
	}
	return "", "", false
}

// HintSubject is HintSubjectID as kind and value. For kind HintIssSub the
// value is the sub alone: a caller that accepts iss_sub must check the
// issuer with HintSubjectID.
func HintSubject(claims map[string]any) (kind, value string, err error) {
	s, err := HintSubjectID(claims)
	if err != nil {
		return "", "", err
	}
	return s.Kind, s.Value, nil
}

// unverifiedAlgs are the algorithms with which UnverifiedHintName reads a
// token: any JWS signature algorithm, since it checks no signature.
var unverifiedAlgs = []gojose.SignatureAlgorithm{
	gojose.EdDSA, gojose.HS256, gojose.HS384, gojose.HS512,
	gojose.RS256, gojose.RS384, gojose.RS512, gojose.ES256, gojose.ES384, gojose.ES512,
	gojose.PS256, gojose.PS384, gojose.PS512,
}

// UnverifiedHintName returns whom idTokenHint, or else loginHintToken,
// names, read WITHOUT verifying the token: the id_token_hint's sub, or
// the login_hint_token's subject identifier (HintSubjectID: the e-mail
// address, phone number, opaque id or sub). It is "" when the token is not
// a readable JWS of at most DefaultMaxSize bytes. It serves only to key the
// per-user limit of a relayed request, whose hint the upstream verifies: a
// forged token can at most use up the allowance of the user it names, as a
// login_hint naming them can.
func UnverifiedHintName(idTokenHint, loginHintToken string) string {
	raw := idTokenHint
	if raw == "" {
		raw = loginHintToken
	}
	if raw == "" || len(raw) > DefaultMaxSize {
		return ""
	}
	jws, err := gojose.ParseSignedCompact(raw, unverifiedAlgs)
	if err != nil {
		return ""
	}
	var claims map[string]any
	if err := json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &claims); err != nil {
		return ""
	}
	if idTokenHint != "" {
		sub, _ := claims["sub"].(string)
		return sub
	}
	id, err := HintSubjectID(claims)
	if err != nil {
		return ""
	}
	return id.Value
}
