// Package local is the "local" upstream: cibaproxy itself is the OpenID
// Provider. Users come from the configuration (bcrypt password and user-code
// hashes); tokens are JWTs signed with the issuer's own key; refresh tokens
// are opaque, stored hashed, rotated on use, and a reused one revokes its
// family (RFC 9700 §4.14.2). It also answers token introspection (RFC
// 7662), revocation (RFC 7009) and userinfo (OIDC Core §5.3) for its
// tokens (tokens.go).
package local

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/jose"
	"github.com/cibaproxy/cibaproxy/internal/limit"
)

// User is one local user.
type User struct {
	// Username is what clients send as login_hint and users type on the
	// approval page.
	Username string
	// Subject is the "sub" of the user's tokens; stable, never reassigned.
	Subject string
	// PasswordHash is the bcrypt hash of the user's password.
	PasswordHash []byte
	// UserCodeHash is the bcrypt hash of the user's CIBA user_code
	// (CIBA §7.1), or empty when the user has none.
	UserCodeHash []byte
	// Claims are extra ID-token claims (email, name …), released by scope.
	Claims map[string]any
}

// Signer signs tokens with the issuer's key (package keys).
type Signer interface {
	// Sign returns a compact JWS of claims with the given typ header.
	Sign(claims any, typ string) (string, error)
	// Alg is the JWS algorithm Sign uses; it selects the at_hash hash.
	Alg() string
	// KeySet verifies what Sign signed, with every key still published:
	// the access tokens presented to introspection, revocation and
	// userinfo.
	KeySet() jose.KeySet
}

// HintVerifier checks the signed hints of CIBA §7.1 (package jose).
type HintVerifier interface {
	// IDTokenHint verifies an ID token this issuer gave clientID and
	// returns its subject.
	IDTokenHint(ctx context.Context, raw, clientID string) (subject string, err error)
	// LoginHintToken verifies a login_hint_token for clientID and returns
	// the kind ("sub", "email", "opaque", "phone_number") and value of the
	// user it names.
	LoginHintToken(ctx context.Context, raw, clientID string) (kind, value string, err error)
}

// Config configures the local upstream.
type Config struct {
	Issuer          string
	Users           []User
	AccessTokenTTL  time.Duration
	IDTokenTTL      time.Duration
	RefreshTokenTTL time.Duration // 0: no refresh tokens
	Signer          Signer
	Hints           HintVerifier
	// LeftHash computes at_hash / rt_hash for the signer's alg.
	LeftHash func(alg, value string) string
	Store    ciba.Store
	// Slots bound the bcrypt checks of passwords and user codes run at
	// once (shared with the client secrets' checks, see app); a check
	// that gets no slot within their wait is not run: CheckPassword
	// returns limit.ErrBusy, CheckUserCode temporarily_unavailable. Nil:
	// no bound.
	Slots *limit.Slots
	// Logger receives the warning that a used refresh token came back
	// (its family is revoked); nil discards it.
	Logger *slog.Logger
}

// Store record kinds of refresh tokens. A refresh token's record
// (RecordRefresh, keyed by the token's SHA-256) stays until it expires,
// used or not: a used token is marked by a RecordRefreshUsed record under
// the same key, which PutRecord writes once only, so the mark is also what
// decides which of two concurrent uses wins. A family (the refresh tokens
// descended from one grant) that saw a used token come back is marked by a
// RecordRefreshRevoked record under its id, and none of its tokens works
// any more. Only the Store's record operations are used (PutRecord,
// GetRecord, and TakeRecord to unmark a token whose new tokens could not be
// issued), so every store backend (memory, embedded, redis) keeps the rule
// with its conformance suite.
const (
	// RecordRefresh holds a refresh token's grant, keyed by its SHA-256.
	RecordRefresh = "refresh"
	// RecordRefreshUsed marks a used refresh token; its value is the family.
	RecordRefreshUsed = "refresh_used"
	// RecordRefreshRevoked marks a revoked family, keyed by its id.
	RecordRefreshRevoked = "refresh_revoked"
	// RecordAccessFamily names the refresh token family of an access
	// token issued with a refresh token, keyed by the access token's jti,
	// kept until the access token expires: a revoked family revokes its
	// access tokens too (RFC 7009 §2.1, RFC 9700 §4.14.2).
	RecordAccessFamily = "access_family"
	// RecordAccessRevoked marks a revoked access token (RFC 7009), keyed
	// by its jti, kept until it expires.
	RecordAccessRevoked = "access_revoked"
)

// revokedMargin is how much longer than a refresh token's lifetime a
// family's revocation is kept: a token of the family issued while the
// revocation was being written still meets it.
const revokedMargin = 5 * time.Minute

// Upstream implements ciba.Upstream and ciba.Minter.
type Upstream struct {
	cfg       Config
	byName    map[string]*User
	bySubject map[string]*User
	byEmail   map[string]*User
	// dummyHash is compared against for unknown usernames.
	dummyHash []byte
}

// New checks the users and returns the upstream.
func New(cfg Config) (*Upstream, error) {
	if cfg.Signer == nil || cfg.Store == nil || cfg.Hints == nil || cfg.LeftHash == nil {
		return nil, errors.New("local: Signer, Hints, LeftHash and Store are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	u := &Upstream{cfg: cfg, byName: map[string]*User{}, bySubject: map[string]*User{}, byEmail: map[string]*User{}}
	for i := range cfg.Users {
		usr := &cfg.Users[i]
		if usr.Subject == "" {
			usr.Subject = usr.Username
		}
		if u.byName[usr.Username] != nil || u.bySubject[usr.Subject] != nil {
			return nil, fmt.Errorf("local: user %q or subject %q appears twice", usr.Username, usr.Subject)
		}
		u.byName[usr.Username] = usr
		u.bySubject[usr.Subject] = usr
		if email, ok := usr.Claims["email"].(string); ok && email != "" {
			u.byEmail[strings.ToLower(email)] = usr
		}
	}
	var err error
	if u.dummyHash, err = bcrypt.GenerateFromPassword([]byte(random(16)), dummyCost(cfg.Users)); err != nil {
		return nil, fmt.Errorf("local: %w", err)
	}
	return u, nil
}

// dummyCost is the bcrypt cost of the hash an unknown username's password
// is checked against: the highest cost of the users' password hashes, so
// that a check for an unknown user takes as long as one for a known user;
// bcrypt.DefaultCost without users.
func dummyCost(users []User) int {
	cost := 0
	for _, usr := range users {
		if c, err := bcrypt.Cost(usr.PasswordHash); err == nil && c > cost {
			cost = c
		}
	}
	if cost == 0 {
		return bcrypt.DefaultCost
	}
	return cost
}

var errUnknownUser = ciba.Errorf(ciba.CodeUnknownUserID, "the hint does not name a known user")

// ResolveUser implements ciba.Upstream. A login_hint is a username, a
// subject or an e-mail address; an id_token_hint must be one this issuer
// signed for the client; a login_hint_token names the user by sub or by a
// subject identifier (RFC 9493).
func (u *Upstream) ResolveUser(ctx context.Context, client *ciba.Client, h ciba.Hint) (ciba.User, error) {
	var usr *User
	switch {
	case h.LoginHint != "":
		usr = u.find(h.LoginHint)
	case h.IDTokenHint != "":
		sub, err := u.cfg.Hints.IDTokenHint(ctx, h.IDTokenHint, client.ID)
		if err != nil {
			return ciba.User{}, err
		}
		usr = u.bySubject[sub]
	case h.LoginHintToken != "":
		kind, value, err := u.cfg.Hints.LoginHintToken(ctx, h.LoginHintToken, client.ID)
		if err != nil {
			return ciba.User{}, err
		}
		switch kind {
		case "email":
			usr = u.byEmail[strings.ToLower(value)]
		case "sub", "opaque":
			usr = u.bySubject[value]
		}
	}
	if usr == nil {
		return ciba.User{}, errUnknownUser
	}
	return ciba.User{Subject: usr.Subject, Display: usr.Username}, nil
}

func (u *Upstream) find(hint string) *User {
	if usr := u.byName[hint]; usr != nil {
		return usr
	}
	if usr := u.bySubject[hint]; usr != nil {
		return usr
	}
	return u.byEmail[strings.ToLower(hint)]
}

// CheckUserCode implements ciba.Upstream. The bcrypt check runs in one of
// Config.Slots: when none comes free in time the code is not checked and
// the answer is temporarily_unavailable (HTTP 503, Retry-After), which the
// caller does not count as a wrong code.
func (u *Upstream) CheckUserCode(ctx context.Context, user ciba.User, code string) error {
	usr := u.bySubject[user.Subject]
	if usr == nil || len(usr.UserCodeHash) == 0 {
		return errWrongUserCode()
	}
	var wrong bool
	if err := u.cfg.Slots.Run(ctx, func() {
		wrong = bcrypt.CompareHashAndPassword(usr.UserCodeHash, []byte(code)) != nil
	}); err != nil {
		return busy("user_code", err)
	}
	if wrong {
		return errWrongUserCode()
	}
	return nil
}

func errWrongUserCode() error {
	return ciba.Errorf(ciba.CodeInvalidUserCode, "the user_code is not valid for this user")
}

// busy is the answer to a check that got no slot (err from limit.Slots.Run):
// temporarily_unavailable with the Retry-After the client-secret checks
// answer with (clientauth), or the end of the request's context.
func busy(what string, err error) error {
	if errors.Is(err, limit.ErrBusy) {
		return &ciba.Error{Code: ciba.CodeTemporarilyUnavailable, Status: http.StatusServiceUnavailable, RetryAfter: time.Second, Err: err,
			Description: "the " + what + " check is busy; retry after the time in Retry-After"}
	}
	return &ciba.Error{Code: ciba.CodeTemporarilyUnavailable, Description: "the request was cancelled", Err: err}
}

// SupportsUserCode implements ciba.Upstream: local users may have codes.
func (u *Upstream) SupportsUserCode() bool { return true }

// CheckPassword verifies a user's password (for the approval and device
// pages) and returns the user's subject. The bcrypt check runs in one of
// Config.Slots; when none comes free in time (or ctx ends first) the
// password is not checked and err is limit.ErrBusy (or wraps ctx's error):
// the caller must not count it as a wrong password.
func (u *Upstream) CheckPassword(ctx context.Context, username, password string) (sub string, ok bool, err error) {
	usr := u.byName[username]
	hash := u.dummyHash
	if usr != nil {
		hash = usr.PasswordHash
	}
	// An unknown username is checked against the dummy hash, so that it
	// costs the same time (and the same slot) as a known one: usernames
	// cannot be probed.
	if err := u.cfg.Slots.Run(ctx, func() {
		ok = bcrypt.CompareHashAndPassword(hash, []byte(password)) == nil
	}); err != nil {
		return "", false, fmt.Errorf("local: password check: %w", err)
	}
	if usr == nil {
		return "", false, nil
	}
	return usr.Subject, ok, nil
}

// scopeClaims are the standard claims each scope releases (OIDC Core §5.4).
var scopeClaims = map[string][]string{
	"profile": {"name", "family_name", "given_name", "middle_name", "nickname", "preferred_username", "profile", "picture", "website", "gender", "birthdate", "zoneinfo", "locale", "updated_at"},
	"email":   {"email", "email_verified"},
	"address": {"address"},
	"phone":   {"phone_number", "phone_number_verified"},
}

// Mint implements ciba.Minter: an access token (RFC 9068 JWT), an ID token
// carrying the CIBA claims that push mode needs (CIBA §10.3.1), and a
// refresh token. A request bound to a client certificate
// (r.CertThumbprint) gets a certificate-bound access token: its cnf claim
// holds the certificate's x5t#S256 (RFC 8705 §3.1). A request bound to a
// DPoP key (r.DPoPJKT) gets a DPoP access token (cnf.jkt, token_type DPoP,
// RFC 9449 §6.1), and, for a public client (r.PublicClient), a refresh
// token bound to the key too (RFC 9449 §5).
func (u *Upstream) Mint(ctx context.Context, r *ciba.AuthRequest, now time.Time) (*ciba.TokenResponse, error) {
	usr := u.bySubject[r.Subject]
	if usr == nil {
		return nil, fmt.Errorf("local: user %q no longer exists", r.Subject)
	}
	g := grant{ClientID: r.ClientID, Subject: r.Subject, Scopes: r.Scopes, AuthTime: r.AuthTime, CertThumbprint: r.CertThumbprint, JKT: r.DPoPJKT, AuthzDetails: r.AuthzDetails, Actor: r.Actor, Resources: r.Resources, Family: random(16)}
	if r.PublicClient {
		// RFC 9449 §5: a public client's refresh tokens are bound to its
		// DPoP key from the first one on.
		g.RefreshJKT = r.DPoPJKT
	}
	return u.issue(ctx, g, usr, r.ID, now)
}

// grant is what a refresh token stands for.
type grant struct {
	ClientID string    `json:"client_id"`
	Subject  string    `json:"sub"`
	Scopes   []string  `json:"scopes"`
	AuthTime time.Time `json:"auth_time"`
	// CertThumbprint is the x5t#S256 the access tokens are bound to
	// (RFC 8705 §3.1); "" for unbound tokens. A refresh binds the new
	// access token to the certificate of the refresh request instead.
	CertThumbprint string `json:"x5t#S256,omitempty"`
	// JKT is the thumbprint of the DPoP key the access tokens are bound to
	// (cnf.jkt, RFC 9449 §6.1); "" for tokens not bound to one. A refresh
	// binds the new access token to the key of the refresh request's proof.
	JKT string `json:"jkt,omitempty"`
	// RefreshJKT is the DPoP key the refresh token itself is bound to: a
	// public client's (RFC 9449 §5), which no client authentication
	// protects; "" for a confidential client's, bound to the client by its
	// authentication.
	RefreshJKT string `json:"refresh_jkt,omitempty"`
	// Family names the refresh tokens descended from one grant by
	// rotation: when a used one comes back, the whole family is revoked
	// (RFC 9700 §4.14.2), as the server cannot tell the thief from the
	// client. Records written before families existed have none; their
	// family is then their own key.
	Family string `json:"family,omitempty"`
	// AuthzDetails are the authorization_details (RFC 9396) the user
	// approved, in canonical JSON; "" for none. Every access token of the
	// grant carries them, refreshed ones too (RFC 9396 §7, §9.1).
	AuthzDetails string `json:"authorization_details,omitempty"`
	// IssuedAt and ExpiresAt are when the refresh token holding the grant
	// was issued and when it expires, for introspection (RFC 7662 §2.2);
	// zero in records written before they were kept.
	IssuedAt  time.Time `json:"iat,omitzero"`
	ExpiresAt time.Time `json:"exp,omitzero"`
	// Actor is the client_id of the delegate acting for the user
	// (AuthRequest.Actor); "" for none. Every access token of the grant
	// names it in act (RFC 8693 §4.1), refreshed ones too: the user
	// approved that client acting for them.
	Actor string `json:"actor,omitempty"`
	// Resources are the resource indicators (RFC 8707) and audience the
	// client asked for: the access tokens' aud, refreshed ones too; none:
	// the issuer.
	Resources []string `json:"resources,omitempty"`
}

// audience is the access token's aud of g: the issuer alone, or the
// resources followed by the issuer (RFC 7519 §4.1.3 allows several). The
// issuer stays in it because its own endpoints (userinfo, introspection)
// take the token too, as Auth0 adds its userinfo audience to an API's
// token.
func (g *grant) audience(issuer string) any {
	if len(g.Resources) == 0 {
		return issuer
	}
	aud := slices.Clone(g.Resources)
	if !slices.Contains(aud, issuer) {
		aud = append(aud, issuer)
	}
	return aud
}

func (u *Upstream) issue(ctx context.Context, g grant, usr *User, authReqID string, now time.Time) (*ciba.TokenResponse, error) {
	scope := strings.Join(g.Scopes, " ")
	claims := map[string]any{
		"iss":       u.cfg.Issuer,
		"sub":       g.Subject,
		"aud":       g.audience(u.cfg.Issuer),
		"client_id": g.ClientID,
		"scope":     scope,
		"iat":       now.Unix(),
		"exp":       now.Add(u.cfg.AccessTokenTTL).Unix(),
	}
	if !g.AuthTime.IsZero() {
		// RFC 9068 §2.2.1: when the user authenticated, where known.
		claims["auth_time"] = g.AuthTime.Unix()
	}
	jti := random(16)
	claims["jti"] = jti
	cnf := map[string]string{}
	if g.CertThumbprint != "" {
		// RFC 8705 §3.1: the confirmation method x5t#S256 (RFC 7800 cnf).
		cnf["x5t#S256"] = g.CertThumbprint
	}
	if g.JKT != "" {
		// RFC 9449 §6.1: the confirmation method jkt.
		cnf["jkt"] = g.JKT
	}
	if len(cnf) > 0 {
		claims["cnf"] = cnf
	}
	if g.AuthzDetails != "" {
		// RFC 9396 §9.1: the JWT access token carries the details.
		claims["authorization_details"] = json.RawMessage(g.AuthzDetails)
	}
	if g.Actor != "" {
		// RFC 8693 §4.1: the party acting for the subject. The ID token
		// does not carry it: it tells the client (its audience) who the
		// user is, and the client is the actor itself.
		claims["act"] = map[string]string{"sub": g.Actor}
	}
	at, err := u.cfg.Signer.Sign(claims, jose.TypAccessToken)
	if err != nil {
		return nil, fmt.Errorf("local: sign access token: %w", err)
	}
	// A certificate-bound token is still used as a bearer token (RFC 6750)
	// over mutual TLS: RFC 8705 defines no token type of its own. A
	// DPoP-bound one is of type DPoP (RFC 9449 §5).
	tokenType := "Bearer"
	if g.JKT != "" {
		tokenType = "DPoP"
	}
	tr := &ciba.TokenResponse{AccessToken: at, TokenType: tokenType, ExpiresIn: int64(u.cfg.AccessTokenTTL / time.Second), Scope: scope}
	if g.AuthzDetails != "" {
		// RFC 9396 §7: the token response says what was granted.
		tr.AuthorizationDetails = ciba.RawJSON(g.AuthzDetails)
	}
	alg := u.cfg.Signer.Alg()
	idt := map[string]any{
		"iss":     u.cfg.Issuer,
		"sub":     g.Subject,
		"aud":     g.ClientID,
		"iat":     now.Unix(),
		"exp":     now.Add(u.cfg.IDTokenTTL).Unix(),
		"at_hash": u.cfg.LeftHash(alg, at),
	}
	if !g.AuthTime.IsZero() {
		idt["auth_time"] = g.AuthTime.Unix()
	}
	if authReqID != "" {
		idt["urn:openid:params:jwt:claim:auth_req_id"] = authReqID
	}
	for _, sc := range g.Scopes {
		for _, name := range scopeClaims[sc] {
			if v, ok := usr.Claims[name]; ok {
				idt[name] = v
			}
		}
		if sc == "profile" {
			idt["preferred_username"] = usr.Username
		}
	}
	if u.cfg.RefreshTokenTTL > 0 {
		rt := random(32)
		g.IssuedAt, g.ExpiresAt = now.Truncate(time.Second), now.Add(u.cfg.RefreshTokenTTL).Truncate(time.Second)
		rec, err := json.Marshal(g)
		if err != nil {
			return nil, fmt.Errorf("local: encode grant: %w", err)
		}
		if err := u.cfg.Store.PutRecord(ctx, RecordRefresh, digest(rt), rec, u.cfg.RefreshTokenTTL); err != nil {
			return nil, fmt.Errorf("local: store refresh token: %w", err)
		}
		// The access token joins the family, so that revoking the family
		// revokes it too.
		if err := u.cfg.Store.PutRecord(ctx, RecordAccessFamily, jti, []byte(g.Family), u.cfg.AccessTokenTTL+revokedMargin); err != nil {
			return nil, fmt.Errorf("local: store access token family: %w", err)
		}
		tr.RefreshToken = rt
		idt["urn:openid:params:jwt:claim:rt_hash"] = u.cfg.LeftHash(alg, rt)
	}
	if slices.Contains(g.Scopes, "openid") {
		if tr.IDToken, err = u.cfg.Signer.Sign(idt, jose.TypIDToken); err != nil {
			return nil, fmt.Errorf("local: sign ID token: %w", err)
		}
	}
	return tr, nil
}

// Refresh answers the refresh_token grant (RFC 6749 §6) for tokens this
// issuer made. The refresh token is single use: a new one is issued with
// the new tokens (rotation), and a used one that comes back is refused and
// revokes its family, the current refresh token included (RFC 9700
// §4.14.2): whoever holds it, the client or a thief, must start over with
// a new authentication. A narrower scope may be asked for.
//
// cert is the x5t#S256 of the client certificate of the refresh request
// when the client's access tokens are certificate-bound, else "": the new
// access token is bound to it (RFC 8705 §3), so a client that renewed its
// certificate gets tokens bound to the new one. The refresh token itself
// is bound to the client by its authentication (RFC 8705 §7.1). A refresh
// token whose access tokens were bound is refused without a certificate,
// rather than turned into unbound tokens.
//
// A refused request leaves the refresh token as it was, so the client can
// still use it: it is read and checked first, and marked used only to be
// used. The access tokens of a revoked family are inactive at
// introspection and userinfo; a resource server that checks the JWTs
// alone accepts them until they expire.
func (u *Upstream) Refresh(ctx context.Context, clientID, refreshToken, scope, cert string, now time.Time) (*ciba.TokenResponse, error) {
	return u.RefreshBound(ctx, clientID, refreshToken, scope, ciba.Binding{Cert: cert}, now)
}

// RefreshBound is Refresh with the keys the refresh request proved it
// holds (b): b.Cert as Refresh's cert, and b.JKT, the thumbprint of the
// request's DPoP proof ("" for none), to which the new access token is
// bound (cnf.jkt, token_type DPoP; RFC 9449 §5). A refresh token whose
// access tokens were DPoP-bound is refused without a proof rather than
// turned into bearer tokens. The refresh tokens of a public client
// (b.PublicClient) that refreshes with a proof are bound to its key from
// then on: each later refresh needs a proof of the same key (RFC 9449 §5),
// so a stolen refresh token is of no use without the private key. A
// confidential client may refresh with another key (key rotation); its
// refresh tokens are bound to it by its authentication.
func (u *Upstream) RefreshBound(ctx context.Context, clientID, refreshToken, scope string, b ciba.Binding, now time.Time) (*ciba.TokenResponse, error) {
	cert := b.Cert
	if refreshToken == "" {
		return nil, tokenErr(ciba.CodeInvalidRequest, "refresh_token is required")
	}
	key := digest(refreshToken)
	rec, err := u.cfg.Store.GetRecord(ctx, RecordRefresh, key)
	if errors.Is(err, ciba.ErrNotFound) {
		return nil, errRefreshUnknown()
	}
	if err != nil {
		return nil, storeDown("read refresh token", err)
	}
	var g grant
	if err := json.Unmarshal(rec, &g); err != nil {
		return nil, &ciba.Error{Code: ciba.CodeServerError, Description: "a stored grant could not be read", Err: fmt.Errorf("local: decode grant: %w", err)}
	}
	if g.ClientID != clientID {
		return nil, errRefreshUnknown()
	}
	if g.Family == "" {
		g.Family = key
	}
	switch _, err := u.cfg.Store.GetRecord(ctx, RecordRefreshRevoked, g.Family); {
	case err == nil:
		return nil, errRefreshRevoked()
	case !errors.Is(err, ciba.ErrNotFound):
		return nil, storeDown("read refresh token family", err)
	}
	if scope != "" {
		// Parsed and bounded like a request's scope: distinct values, so
		// a repeated one cannot swell the new tokens.
		asked, e := ciba.ParseScope(scope)
		if e != nil {
			return nil, tokenErr(e.Code, "%s", e.Description)
		}
		for _, sc := range asked {
			if !slices.Contains(g.Scopes, sc) {
				return nil, tokenErr(ciba.CodeInvalidScope, "scope %q was not granted", sc)
			}
		}
		if len(asked) > 0 {
			g.Scopes = asked
		}
	}
	usr := u.bySubject[g.Subject]
	if usr == nil {
		return nil, tokenErr(ciba.CodeInvalidGrant, "the user no longer exists")
	}
	if g.CertThumbprint != "" && cert == "" {
		return nil, tokenErr(ciba.CodeInvalidGrant, "the refresh token was issued with certificate-bound access tokens; refresh over mutual TLS with the client certificate (RFC 8705 §3)")
	}
	g.CertThumbprint = cert
	switch {
	case g.RefreshJKT != "" && b.JKT != g.RefreshJKT:
		return nil, tokenErr(ciba.CodeInvalidGrant, "the refresh token is bound to a DPoP key; refresh with a DPoP proof of that key (RFC 9449 §5)")
	case g.JKT != "" && b.JKT == "":
		return nil, tokenErr(ciba.CodeInvalidGrant, "the refresh token was issued with DPoP-bound access tokens; refresh with a DPoP proof (RFC 9449 §5)")
	}
	g.JKT = b.JKT
	if b.PublicClient && b.JKT != "" {
		g.RefreshJKT = b.JKT
	}
	// Marked used only now, and atomically: of two concurrent uses one
	// wins, and the other is a reuse.
	switch err := u.cfg.Store.PutRecord(ctx, RecordRefreshUsed, key, []byte(g.Family), u.markTTL()); {
	case errors.Is(err, ciba.ErrExists):
		return nil, u.revokeFamily(ctx, clientID, g.Family)
	case err != nil:
		return nil, storeDown("mark refresh token used", err)
	}
	tr, err := u.issue(ctx, g, usr, "", now)
	if err != nil {
		// Nothing was issued: unmark the token, so that the client's
		// retry is not taken for a reuse.
		_, _ = u.cfg.Store.TakeRecord(context.WithoutCancel(ctx), RecordRefreshUsed, key)
		return nil, err
	}
	return tr, nil
}

// markTTL is how long a used or revoked mark must be kept: as long as a
// refresh token lives. Refresh tokens issued before refresh_token_ttl was
// set to 0 live on with the old lifetime, unknown here: 24h, the default,
// rather than forever.
func (u *Upstream) markTTL() time.Duration {
	if u.cfg.RefreshTokenTTL > 0 {
		return u.cfg.RefreshTokenTTL
	}
	return 24 * time.Hour
}

// revokeFamily revokes refresh token family fam of client clientID, whose
// used token came back, and returns the refusal of that use.
func (u *Upstream) revokeFamily(ctx context.Context, clientID, fam string) error {
	if err := u.markFamilyRevoked(ctx, fam); err != nil {
		return err
	}
	u.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "a used refresh token came back: its family is revoked (RFC 9700 §4.14.2)",
		slog.String("client_id", clientID))
	return errRefreshRevoked()
}

// markFamilyRevoked marks refresh token family fam revoked, for as long as
// one of its refresh or access tokens may still be presented.
func (u *Upstream) markFamilyRevoked(ctx context.Context, fam string) error {
	err := u.cfg.Store.PutRecord(ctx, RecordRefreshRevoked, fam, nil, max(u.markTTL(), u.cfg.AccessTokenTTL)+revokedMargin)
	if err != nil && !errors.Is(err, ciba.ErrExists) {
		return storeDown("revoke refresh token family", err)
	}
	return nil
}

// errRefreshUnknown refuses an unknown, expired or another client's
// refresh token, in the same words, so tokens cannot be probed.
func errRefreshUnknown() error {
	return tokenErr(ciba.CodeInvalidGrant, "the refresh token is unknown, expired or already used")
}

// errRefreshRevoked refuses a refresh token of a revoked family.
func errRefreshRevoked() error {
	return tokenErr(ciba.CodeInvalidGrant, "a used refresh token of this grant came back, so all its refresh tokens are revoked (RFC 9700 §4.14.2); authenticate again")
}

// storeDown is the temporarily_unavailable of a token store operation
// (what) that failed with err.
func storeDown(what string, err error) *ciba.Error {
	return &ciba.Error{Code: ciba.CodeTemporarilyUnavailable, Description: "the token store is unavailable; try again later", Err: fmt.Errorf("local: %s: %w", what, err)}
}

func tokenErr(code ciba.ErrorCode, format string, args ...any) *ciba.Error {
	e := ciba.Errorf(code, format, args...)
	e.Status = 400
	return e
}

func random(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err))
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func digest(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
