package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/jose"
)

// Token type hints (RFC 7009 §2.1, RFC 7662 §2.1).
const (
	HintAccessToken  = "access_token"
	HintRefreshToken = "refresh_token"
)

// errInactive is what every token that is not active comes to: unknown,
// malformed, expired, revoked, used or of a removed user. Callers never
// tell which (RFC 7662 §2.2: the introspection response says no more than
// "active": false).
var errInactive = errors.New("local: the token is not active")

// accessPolicy is the verification of the issuer's own access tokens at
// now: no clock skew, since the issuer's clock set exp.
func (u *Upstream) accessPolicy(now time.Time) jose.AccessTokenPolicy {
	return jose.AccessTokenPolicy{Issuer: u.cfg.Issuer, KeySet: u.cfg.Signer.KeySet(), Now: func() time.Time { return now }, ClockSkew: -1}
}

// looksLikeJWT reports whether token has the shape of a compact JWS: the
// issuer's access tokens are JWTs, its refresh tokens are not.
func looksLikeJWT(token string) bool { return strings.Count(token, ".") == 2 }

// tokenKind is a kind of token the issuer answers introspection and
// revocation for.
type tokenKind int

const (
	kindAccess  tokenKind = iota // an RFC 9068 JWT
	kindRefresh                  // an opaque random string (base64url, no dot)
)

// holds reports whether token can be of kind k at all, by its shape alone:
// the lookup of a kind that cannot hold it is known to fail, and is not
// made (no signature check, no store read).
func (k tokenKind) holds(token string) bool { return looksLikeJWT(token) == (k == kindAccess) }

// searchOrder is the order in which introspection and revocation look a
// token up for token_type_hint hint: the hinted kind first, then the
// other, since a token not found as the hinted kind must be searched for
// among every kind the server supports (RFC 7662 §2.1, RFC 7009 §2.1).
// No hint, or a value this issuer does not know ("id_token", a typo), is
// no error and orders nothing: access tokens first.
func searchOrder(hint string) [2]tokenKind {
	if hint == HintRefreshToken {
		return [2]tokenKind{kindRefresh, kindAccess}
	}
	return [2]tokenKind{kindAccess, kindRefresh}
}

// kindOf is the kind token is looked up as for hint: the hinted kind if
// it can hold the token, else the other. The two kinds' shapes share no
// string, so the search across both ends there.
func kindOf(token, hint string) tokenKind {
	order := searchOrder(hint)
	if order[0].holds(token) {
		return order[0]
	}
	return order[1]
}

// access verifies access token raw and checks that it is still active:
// neither revoked by its jti nor of a revoked refresh token family, and
// its user still exists. It returns errInactive for a token that is not,
// or a temporarily_unavailable error when the store cannot tell.
func (u *Upstream) access(ctx context.Context, raw string, now time.Time) (*jose.AccessToken, error) {
	at, err := jose.VerifyAccessToken(ctx, raw, u.accessPolicy(now))
	if err != nil {
		if errors.Is(err, jose.ErrPolicy) {
			return nil, &ciba.Error{Code: ciba.CodeServerError, Description: "internal error", Err: err}
		}
		return nil, errInactive
	}
	switch _, err := u.cfg.Store.GetRecord(ctx, RecordAccessRevoked, at.JTI); {
	case err == nil:
		return nil, errInactive
	case !errors.Is(err, ciba.ErrNotFound):
		return nil, storeDown("read access token revocation", err)
	}
	fam, err := u.cfg.Store.GetRecord(ctx, RecordAccessFamily, at.JTI)
	switch {
	case errors.Is(err, ciba.ErrNotFound):
		// Issued without a refresh token: it has no family.
	case err != nil:
		return nil, storeDown("read access token family", err)
	default:
		switch _, err := u.cfg.Store.GetRecord(ctx, RecordRefreshRevoked, string(fam)); {
		case err == nil:
			return nil, errInactive
		case !errors.Is(err, ciba.ErrNotFound):
			return nil, storeDown("read refresh token family", err)
		}
	}
	if u.bySubject[at.Subject] == nil {
		return nil, errInactive
	}
	return at, nil
}

// refreshGrant returns the grant of refresh token raw if it is still
// active: stored, not used, and its family not revoked; errInactive if
// not.
func (u *Upstream) refreshGrant(ctx context.Context, raw string) (*grant, error) {
	key := digest(raw)
	rec, err := u.cfg.Store.GetRecord(ctx, RecordRefresh, key)
	switch {
	case errors.Is(err, ciba.ErrNotFound):
		return nil, errInactive
	case err != nil:
		return nil, storeDown("read refresh token", err)
	}
	var g grant
	if err := json.Unmarshal(rec, &g); err != nil {
		return nil, &ciba.Error{Code: ciba.CodeServerError, Description: "internal error", Err: fmt.Errorf("local: decode grant: %w", err)}
	}
	if g.Family == "" {
		g.Family = key
	}
	for _, r := range []struct{ kind, key string }{{RecordRefreshUsed, key}, {RecordRefreshRevoked, g.Family}} {
		switch _, err := u.cfg.Store.GetRecord(ctx, r.kind, r.key); {
		case err == nil:
			return &g, errInactive
		case !errors.Is(err, ciba.ErrNotFound):
			return nil, storeDown("read refresh token state", err)
		}
	}
	if u.bySubject[g.Subject] == nil {
		return &g, errInactive
	}
	return &g, nil
}

// Introspect answers token introspection (RFC 7662 §2.2) of token, an
// access or refresh token of this issuer, with hint the caller's
// token_type_hint: the hinted kind is looked up first, then the other
// (searchOrder); "" or an unknown value is no error. An active token gets its
// claims with "active": true; any other, whatever the reason, nil (the
// caller answers {"active": false} and nothing else). An error is the
// store's failure (temporarily_unavailable).
//
// An access token's answer holds its JWT claims (iss, sub, aud, exp, iat,
// jti, client_id, scope, auth_time, cnf, authorization_details, act), its
// token_type (Bearer, or DPoP for one bound to a DPoP key, RFC 9449 §6.2)
// and the user's username. A refresh token's holds client_id, sub, scope,
// iat and exp where known, its cnf when it is bound to a DPoP key,
// authorization_details, and act for a delegate's grant (RFC 8693 §4.1).
func (u *Upstream) Introspect(ctx context.Context, token, hint string, now time.Time) (map[string]any, error) {
	if token == "" {
		return nil, nil
	}
	if kindOf(token, hint) == kindAccess {
		at, err := u.access(ctx, token, now)
		if errors.Is(err, errInactive) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		out := make(map[string]any, len(at.Claims)+3)
		for k, v := range at.Claims {
			out[k] = v
		}
		out["active"] = true
		out["token_type"] = "Bearer"
		if cnf, ok := at.Claims["cnf"].(map[string]any); ok && cnf["jkt"] != nil {
			out["token_type"] = "DPoP"
		}
		out["username"] = u.bySubject[at.Subject].Username
		return out, nil
	}
	return u.introspectRefresh(ctx, token)
}

// introspectRefresh is Introspect of refresh token token.
func (u *Upstream) introspectRefresh(ctx context.Context, token string) (map[string]any, error) {
	g, err := u.refreshGrant(ctx, token)
	if errors.Is(err, errInactive) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := map[string]any{
		"active":    true,
		"client_id": g.ClientID,
		"sub":       g.Subject,
		"iss":       u.cfg.Issuer,
		"scope":     strings.Join(g.Scopes, " "),
		"username":  u.bySubject[g.Subject].Username,
	}
	if !g.IssuedAt.IsZero() {
		out["iat"] = g.IssuedAt.Unix()
		out["exp"] = g.ExpiresAt.Unix()
	}
	if !g.AuthTime.IsZero() {
		out["auth_time"] = g.AuthTime.Unix()
	}
	if g.RefreshJKT != "" {
		out["cnf"] = map[string]string{"jkt": g.RefreshJKT}
	}
	if g.AuthzDetails != "" {
		out["authorization_details"] = json.RawMessage(g.AuthzDetails)
	}
	if g.Actor != "" {
		// RFC 8693 §4.1: act in an introspection response too.
		out["act"] = map[string]string{"sub": g.Actor}
	}
	return out, nil
}

// errNotOwner refuses the revocation of another client's token (RFC 7009
// §2.1: the server verifies that the token was issued to the client making
// the request, and refuses it with an error if not). The token stays as it
// was.
func errNotOwner() error {
	return tokenErr(ciba.CodeUnauthorizedClient, "the token was not issued to this client; it is not revoked (RFC 7009 section 2.1)")
}

// Revoke answers token revocation (RFC 7009 §2) of token by client
// clientID, with hint the token_type_hint, used as Introspect uses it: ""
// or an unknown value is no error. Every kind of token a client holds as a
// credential can be revoked, so unsupported_token_type (RFC 7009 §2.2.1)
// is never the answer: not for a hint of another type, nor for a token
// of none (an ID token), which is unknown here (200, §2.2).
// A refresh token revokes its whole family (the refresh tokens rotated
// from one grant, and the access tokens issued with them), as a reused
// one does (RFC 9700 §4.14.2); an access token is revoked by its jti until
// it expires. A token that is unknown, malformed, expired or already
// revoked is no error (RFC 7009 §2.2); another client's token is refused
// with unauthorized_client and stays valid. An error is that refusal or
// the store's failure (temporarily_unavailable).
func (u *Upstream) Revoke(ctx context.Context, clientID, token, hint string, now time.Time) error {
	if token == "" {
		return nil
	}
	if kindOf(token, hint) == kindAccess {
		at, err := jose.VerifyAccessToken(ctx, token, u.accessPolicy(now))
		if errors.Is(err, jose.ErrPolicy) {
			return &ciba.Error{Code: ciba.CodeServerError, Description: "internal error", Err: err}
		}
		if err != nil {
			return nil
		}
		if at.ClientID != clientID {
			return errNotOwner()
		}
		// Kept until the token would have expired, and a little longer:
		// it is never accepted after that anyway.
		ttl := at.Expiry.Sub(now) + revokedMargin
		if err := u.cfg.Store.PutRecord(ctx, RecordAccessRevoked, at.JTI, nil, ttl); err != nil && !errors.Is(err, ciba.ErrExists) {
			return storeDown("revoke access token", err)
		}
		return nil
	}
	g, err := u.refreshGrant(ctx, token)
	switch {
	case g == nil && errors.Is(err, errInactive):
		return nil
	case g == nil:
		return err
	case g.ClientID != clientID:
		return errNotOwner()
	}
	// A used or revoked token is revoked again: its family is what counts.
	return u.markFamilyRevoked(ctx, g.Family)
}

// errInsufficientScope refuses userinfo to a token without the openid
// scope (OIDC Core §5.3.1, RFC 6750 §3.1).
var errInsufficientScope = &ciba.Error{Code: ciba.CodeInsufficientScope, Description: "the access token was not issued with the openid scope"}

// errInvalidToken refuses a token that is not active, saying no more.
var errInvalidToken = &ciba.Error{Code: ciba.CodeInvalidToken, Description: "the access token is not valid"}

// UserInfo verifies access token raw for the userinfo endpoint (OIDC Core
// §5.3) and returns the user's claims released by its scopes (OIDC Core
// §5.4: profile, email, address, phone) with sub, and the token's cnf
// (RFC 7800), which the caller checks against the request's DPoP proof or
// client certificate. A token that is not active is invalid_token; one
// without the openid scope insufficient_scope (403); a store failure
// temporarily_unavailable.
func (u *Upstream) UserInfo(ctx context.Context, raw string, now time.Time) (claims map[string]any, cnf map[string]string, err error) {
	at, err := u.access(ctx, raw, now)
	if errors.Is(err, errInactive) {
		return nil, nil, errInvalidToken
	}
	if err != nil {
		return nil, nil, err
	}
	if c, ok := at.Claims["cnf"].(map[string]any); ok {
		cnf = make(map[string]string, len(c))
		for k, v := range c {
			s, _ := v.(string)
			cnf[k] = s
		}
	}
	scopes := strings.Fields(at.Scope)
	if !slices.Contains(scopes, "openid") {
		return nil, cnf, errInsufficientScope
	}
	usr := u.bySubject[at.Subject]
	claims = map[string]any{"sub": usr.Subject}
	for _, sc := range scopes {
		for _, name := range scopeClaims[sc] {
			if v, ok := usr.Claims[name]; ok {
				claims[name] = v
			}
		}
		if sc == "profile" {
			claims["preferred_username"] = usr.Username
		}
	}
	return claims, cnf, nil
}
