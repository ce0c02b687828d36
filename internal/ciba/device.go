package ciba

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"time"
)

// The device authorization grant (RFC 8628) runs on the same AuthRequest,
// state machine, store and poll pacing as CIBA: a device request is an
// AuthRequest of Kind KindDevice whose ID is the device_code. What differs is
// only how it starts (the client names no user; the user types a short user
// code on the verification page) and who approves (whoever signs in there).
//
// The user code is found through a store record of kind UserCodeRecord,
// keyed by the normalised code and holding the request's ID. A record rather
// than the ApprovalID, because the ApprovalID is also the key of the
// approval page and of callback tokens, which must stay unguessable (128
// bits); a user code has about 35 bits and is safe only behind the
// verification page's rate limit. PutRecord fails on a live duplicate, so two
// pending requests never share a code.

// GrantDeviceCode is the grant_type of the device access token request
// (RFC 8628 §3.4).
const GrantDeviceCode = "urn:ietf:params:oauth:grant-type:device_code"

// UserCodeRecord is the store record kind mapping a normalised user code to
// its request's ID.
const UserCodeRecord = "usercode"

// DefaultUserCodeCharset is RFC 8628 §6.1's example charset: upper-case
// consonants without vowels (no words), easy to type.
const DefaultUserCodeCharset = "BCDFGHJKLMNPQRSTVWXZ"

// DeviceConfig holds the settings of the device authorization grant.
type DeviceConfig struct {
	// Expiry is the lifetime of a device request (expires_in). Default 10m.
	Expiry time.Duration
	// Interval is the minimum poll interval (RFC 8628 §3.2); default 5s.
	// slow_down grows it by the service's SlowDownStep.
	Interval time.Duration
	// UserCodeCharset are the characters of user codes: upper-case ASCII
	// letters and digits, each once. Default DefaultUserCodeCharset.
	UserCodeCharset string
	// UserCodeLength is the number of characters of a user code; default
	// 8. With the default charset that is 20^8, about 34.6 bits.
	UserCodeLength int
	// VerificationURI is the verification page (RFC 8628 §3.2).
	VerificationURI string
	// Enabled reports whether a client may use the grant; nil allows none.
	Enabled func(clientID string) bool
}

// minUserCodeBits is the least entropy accepted for user codes; the rate
// limit of the verification page does the rest (RFC 8628 §5.1).
const minUserCodeBits = 30

// Device is the device authorization grant (RFC 8628), on top of the
// service's parts: it creates device requests with their user codes (or
// has the Relayer forward them), finds a request by user code for the
// verification page, records the decision of the user who signed in
// there, and answers the device's polls through the Poller. Its
// dependencies: the store, the Sealer and Minter (tokens on approval), the
// client registry, and the service's Poller, Decisions and Relayer.
type Device struct {
	base
	grant     DeviceConfig // the device grant's settings; base.cfg holds the service's
	sealer    Sealer
	minter    Minter
	clients   func(id string) (*Client, bool)
	poller    *Poller
	decisions *Decisions
	relayer   *Relayer
	// upstream is the service's (Deps.Upstream): a DetailsChecker among
	// them (the oidc upstream) checks authorization_details here as at
	// bc-authorize.
	upstream Upstream
	// acceptor is the service's: its validation hook judges a request
	// that carries authorization_details (Acceptor.validateDevice).
	acceptor *Acceptor
}

// NewDevice checks cfg, fills in its defaults and returns the grant.
func NewDevice(s *Service, cfg DeviceConfig) (*Device, error) {
	if s == nil {
		return nil, errors.New("ciba: device grant needs a Service")
	}
	if s.relayer.upstream != nil && s.relayer.deviceRelay() == nil {
		return nil, errors.New("ciba: the device grant needs an upstream that relays it (a DeviceRelay)")
	}
	if cfg.Expiry == 0 {
		cfg.Expiry = 10 * time.Minute
	}
	if cfg.Interval == 0 {
		cfg.Interval = 5 * time.Second
	}
	if cfg.UserCodeCharset == "" {
		cfg.UserCodeCharset = DefaultUserCodeCharset
	}
	if cfg.UserCodeLength == 0 {
		cfg.UserCodeLength = 8
	}
	if cfg.Enabled == nil {
		cfg.Enabled = func(string) bool { return false }
	}
	switch {
	case cfg.Expiry < 0 || cfg.Interval < time.Second:
		return nil, fmt.Errorf("ciba: device expiry %v must be positive and interval %v at least one second", cfg.Expiry, cfg.Interval)
	case cfg.VerificationURI == "":
		return nil, errors.New("ciba: device grant needs a VerificationURI")
	}
	if why := checkCharset(cfg.UserCodeCharset); why != "" {
		return nil, fmt.Errorf("ciba: user code charset: %s", why)
	}
	if bits := UserCodeBits(cfg.UserCodeCharset, cfg.UserCodeLength); bits < minUserCodeBits || cfg.UserCodeLength > 32 {
		return nil, fmt.Errorf("ciba: user codes of %d characters from %d give %.1f bits; at least %d bits and at most 32 characters are needed",
			cfg.UserCodeLength, len(cfg.UserCodeCharset), bits, minUserCodeBits)
	}
	return &Device{base: s.base, grant: cfg, sealer: s.decisions.sealer, minter: s.decisions.minter, clients: s.decisions.clients,
		poller: s.poller, decisions: s.decisions, relayer: s.relayer, upstream: s.acceptor.upstream, acceptor: s.acceptor}, nil
}

// UserCodeBits is the entropy of a user code of n characters from charset.
func UserCodeBits(charset string, n int) float64 {
	if len(charset) < 2 || n <= 0 {
		return 0
	}
	return float64(n) * math.Log2(float64(len(charset)))
}

// checkCharset returns why charset cannot make user codes, or "".
func checkCharset(charset string) string {
	if len(charset) < 2 {
		return "at least two characters are needed"
	}
	for i := 0; i < len(charset); i++ {
		c := charset[i]
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return fmt.Sprintf("%q is not an upper-case ASCII letter or digit", c)
		}
		if strings.IndexByte(charset[:i], c) >= 0 {
			return fmt.Sprintf("%q appears twice", c)
		}
	}
	return ""
}

// DeviceAuthResponse is the device authorization response (RFC 8628 §3.2).
type DeviceAuthResponse struct {
	// DeviceCode is the request's ID: a 192-bit secret, like auth_req_id.
	DeviceCode      string `json:"device_code"`
	UserCode        string `json:"user_code"`
	VerificationURI string `json:"verification_uri"`
	// VerificationURIComplete is always set by cibaproxy; a relaying
	// upstream may omit it (RFC 8628 §3.2: OPTIONAL).
	VerificationURIComplete string `json:"verification_uri_complete,omitempty"`
	ExpiresIn               int64  `json:"expires_in"`
	Interval                int64  `json:"interval"`
}

// Enabled reports whether client c may use the device grant.
func (d *Device) Enabled(c *Client) bool { return c != nil && d.grant.Enabled(c.ID) }

// Authorize answers a device authorization request (RFC 8628 §3.1, §3.2) of
// the authenticated client c: it stores a pending request with a fresh user
// code, or, with a relaying upstream (DeviceRelay), forwards the request
// there and passes on the upstream's user code (device_relay.go). An empty
// scope asks for "openid". It is AuthorizeCert without a client
// certificate.
func (d *Device) Authorize(ctx context.Context, c *Client, scope string) (*DeviceAuthResponse, error) {
	return d.AuthorizeCert(ctx, c, scope, "")
}

// AuthorizeCert is Authorize for a client whose access tokens are bound to
// the client certificate with x5t#S256 cert (RFC 8705 §3): the request
// records it, its tokens carry it, and PollCert redeems it only with the
// same certificate. "" binds nothing.
func (d *Device) AuthorizeCert(ctx context.Context, c *Client, scope, cert string) (*DeviceAuthResponse, error) {
	return d.AuthorizeBound(ctx, c, scope, Binding{Cert: cert})
}

// AuthorizeBound is AuthorizeCert with every key the request is bound to:
// b.Cert as AuthorizeCert's cert, and b.JKT, the DPoP key of the device
// authorization request's proof or dpop_jkt (RFC 9449 §10): the tokens,
// minted when the user approves, carry it in cnf.jkt, and PollBound hands
// them out only to a poll with a proof of that key, so a device_code read
// off the device is of no use without its private key. b.PublicClient
// marks a client that authenticated by its client_id alone, whose refresh
// tokens are then bound to the DPoP key too (RFC 9449 §5). A relaying
// upstream cannot bind its tokens: a DPoP key is refused there.
func (d *Device) AuthorizeBound(ctx context.Context, c *Client, scope string, b Binding) (*DeviceAuthResponse, error) {
	return d.AuthorizeParams(ctx, c, DeviceParams{Scope: scope}, b)
}

// DeviceParams are the parameters of a device authorization request
// (RFC 8628 §3.1) as the client sent them; the grant checks them.
type DeviceParams struct {
	// Scope is the scope parameter; "" asks for "openid".
	Scope string
	// AuthorizationDetails is authorization_details (RFC 9396 §3, which
	// allows it at the device authorization endpoint) as received: checked
	// exactly as at bc-authorize (the client's types, each type's JSON
	// Schema, the size and count bounds), stored in canonical JSON, shown
	// on the device page and carried by the tokens. "" for none.
	AuthorizationDetails string
	// Resources are the resource parameters (RFC 8707 §2) and Audience
	// the audience parameter, checked against the client's list as at
	// bc-authorize: the access token's aud.
	Resources []string
	Audience  string
}

// AuthorizeParams is AuthorizeBound with the request's other parameters
// (DeviceParams): authorization_details and resource indicators are
// checked by the same code as at bc-authorize, and refused with its
// errors (invalid_authorization_details naming the element and field,
// invalid_target). With the oidc upstream the details' types must be ones
// the identity provider's discovery lists (DetailsChecker), since they go
// to it with the user's sign-in; a relaying upstream takes neither
// details nor resources on the device grant, and they are refused rather
// than dropped. A request with details is judged by the validation hook
// as at bc-authorize (Acceptor.validateDevice). A delegate client
// (Client.ActsForUser) is recorded as the request's Actor.
func (d *Device) AuthorizeParams(ctx context.Context, c *Client, p DeviceParams, b Binding) (*DeviceAuthResponse, error) {
	if !d.Enabled(c) {
		return nil, Errorf(CodeUnauthorizedClient, "client %q may not use the device authorization grant (its configuration lacks device_authorization: true)", c.ID)
	}
	scope := p.Scope
	if scope == "" {
		scope = "openid"
	}
	scopes, e := ParseScope(scope)
	if e != nil {
		return nil, e
	}
	if scopes, e = d.grantable(c, scopes); e != nil {
		return nil, e
	}
	details, e := authorizationDetails(d.cfg.AuthzDetails.Registry(), c, p.AuthorizationDetails)
	if e != nil {
		return nil, e
	}
	resources, e := targets(c, p.Resources, p.Audience)
	if e != nil {
		return nil, e
	}
	if dr := d.relayer.deviceRelay(); dr != nil {
		if b.JKT != "" {
			return nil, Errorf(CodeInvalidDPoPProof, "DPoP-bound tokens are not available here: the identity provider issues them")
		}
		if details != "" {
			return nil, Errorf(CodeInvalidAuthorizationDetails, "authorization_details cannot be passed on with the device grant, which the identity provider runs here; the request is refused rather than sent without them")
		}
		if len(resources) > 0 {
			return nil, Errorf(CodeInvalidTarget, "resource and audience cannot be passed on with the device grant, which the identity provider runs here; the request is refused rather than sent without them")
		}
		return d.relayer.startDevice(ctx, dr, c, scope, scopes, d.grant.Expiry, d.grant.Interval)
	}
	if details != "" {
		if dc, ok := d.upstream.(DetailsChecker); ok {
			if err := dc.CheckAuthzDetails(ctx, c, details); err != nil {
				return nil, d.upstreamError("check authorization_details", err)
			}
		}
	}
	if e := d.acceptor.validateDevice(ctx, c, scopes, details); e != nil {
		return nil, e
	}
	now := d.now()
	r := newDeviceRequest(c, scopes, now, d.grant.Expiry, d.grant.Interval)
	r.CertThumbprint = b.Cert
	r.DPoPJKT = b.JKT
	r.PublicClient = b.PublicClient
	r.AuthzDetails = details
	r.Resources = resources
	if c.ActsForUser {
		r.Actor = c.ID
	}
	// The record outlives the request's lifetime by the grace period, so
	// the page can still say "expired" rather than "not valid".
	ttl := d.grant.Expiry + d.cfg.ExpiredGrace
	var code string
	for attempt := 0; ; attempt++ {
		code = d.newUserCode()
		err := d.store.PutRecord(ctx, UserCodeRecord, code, []byte(r.ID), ttl)
		if err == nil {
			break
		}
		if !errors.Is(err, ErrExists) {
			return nil, d.storeError("put user code", err)
		}
		if attempt == 4 { // 5 collisions in a row: the code space is full
			d.log.Error("device authorization: no free user code after 5 tries; lengthen device.user_code_length")
			return nil, &Error{Code: CodeTemporarilyUnavailable, Description: "no user code is free; try again later", Err: err}
		}
	}
	if err := d.store.CreateRequest(ctx, r); err != nil {
		return nil, d.storeError("create device request", err)
	}
	d.log.LogAttrs(ctx, slog.LevelInfo, "device request created", slog.String("client_id", c.ID), slog.Duration("lifetime", d.grant.Expiry))
	shown := FormatUserCode(code)
	return &DeviceAuthResponse{
		DeviceCode:              r.ID,
		UserCode:                shown,
		VerificationURI:         d.grant.VerificationURI,
		VerificationURIComplete: d.grant.VerificationURI + "?user_code=" + shown,
		ExpiresIn:               int64(d.grant.Expiry / time.Second),
		Interval:                int64(d.grant.Interval / time.Second),
	}, nil
}

// newUserCode returns a uniformly random user code (rejection sampling, so
// no character is likelier than another).
func (d *Device) newUserCode() string {
	cs := d.grant.UserCodeCharset
	limit := 256 - 256%len(cs)
	out := make([]byte, 0, d.grant.UserCodeLength)
	buf := make([]byte, 2*d.grant.UserCodeLength)
	for len(out) < d.grant.UserCodeLength {
		if _, err := rand.Read(buf); err != nil {
			panic(fmt.Sprintf("crypto/rand failed: %v", err)) // never on supported platforms
		}
		for _, b := range buf {
			if int(b) < limit && len(out) < d.grant.UserCodeLength {
				out = append(out, cs[int(b)%len(cs)])
			}
		}
	}
	return string(out)
}

// FormatUserCode groups a normalised user code in fours with dashes, as it
// is shown to the user: BDWPHQPK becomes BDWP-HQPK.
func FormatUserCode(code string) string {
	var b strings.Builder
	for i := 0; i < len(code); i++ {
		if i > 0 && i%4 == 0 {
			b.WriteByte('-')
		}
		b.WriteByte(code[i])
	}
	return b.String()
}

// NormalizeUserCode turns what a user typed into the stored form: upper
// case, without dashes and spaces (RFC 8628 §6.1).
func NormalizeUserCode(typed string) string {
	var b strings.Builder
	for _, r := range strings.ToUpper(typed) {
		if r == '-' || r == ' ' || r == '\t' {
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// ForUserCode returns the request behind a user code and its client, for
// the verification page. A code that is malformed or unknown is
// ErrNotFound-wrapped; a request that is no longer pending returns its state
// *Error (as ForApproval does), with the request.
func (d *Device) ForUserCode(ctx context.Context, typed string) (*AuthRequest, *Client, error) {
	code := NormalizeUserCode(typed)
	if len(code) != d.grant.UserCodeLength || strings.Trim(code, d.grant.UserCodeCharset) != "" {
		return nil, nil, fmt.Errorf("user code of the wrong form: %w", ErrNotFound)
	}
	id, err := d.store.GetRecord(ctx, UserCodeRecord, code)
	if err != nil {
		return nil, nil, fmt.Errorf("user code record: %w", err)
	}
	r, err := d.store.GetRequest(ctx, string(id))
	if err != nil {
		return nil, nil, fmt.Errorf("device request: %w", err)
	}
	if r.Kind != KindDevice {
		return nil, nil, fmt.Errorf("user code names a request of another grant: %w", ErrNotFound)
	}
	c, ok := d.clients(r.ClientID)
	if !ok {
		return nil, nil, fmt.Errorf("client %q of device request: %w", r.ClientID, ErrNotFound)
	}
	if r.Status != StatusPending || r.Expired(d.now()) {
		return r, c, notPending(r)
	}
	return r, c, nil
}

// ApproveAs approves the device request r for user, who signed in on the
// verification page, with tokens from the service's Minter (the local
// upstream). The user becomes the request's subject in the same
// compare-and-set that approves it.
func (d *Device) ApproveAs(ctx context.Context, r *AuthRequest, user User) error {
	return d.ApproveAsWithRecord(ctx, r, user, nil)
}

// ApproveAsWithRecord is ApproveAs keeping a signed approval record with
// the decision (AuthRequest.ApprovalRecord), in the same compare-and-set:
// record is called with the request as approved (subject set) and the
// approval time; its error approves nothing.
func (d *Device) ApproveAsWithRecord(ctx context.Context, r *AuthRequest, user User, record func(r *AuthRequest, at time.Time) (string, error)) error {
	return d.ApproveAsShown(ctx, r, user, r.DetailsDigest(), record)
}

// ApproveAsShown is ApproveAsWithRecord for a user who was shown the
// request's authorization_details of digest shown (authzdetails.DigestOf;
// "" for none) on the device page, as Decisions.ApproveShown is for the
// approval page: a digest that is not the request's is refused
// (invalid_request wrapping ErrDetailsChanged) and nothing changes; the
// tokens must carry exactly the approved list (else server_error, nothing
// stored); and the digest is recorded with the decision
// (AuthRequest.ApprovedDetails), in the compare-and-set that approves.
func (d *Device) ApproveAsShown(ctx context.Context, r *AuthRequest, user User, shown string, record func(r *AuthRequest, at time.Time) (string, error)) error {
	if d.minter == nil {
		return Errorf(CodeInvalidRequest, "with this upstream the user approves by signing in at the identity provider")
	}
	if r.Kind != KindDevice {
		return Errorf(CodeInvalidRequest, "not a device request")
	}
	now := d.now()
	if r.Status != StatusPending || r.Expired(now) {
		return notPending(r)
	}
	if shown != r.DetailsDigest() {
		return detailsChanged()
	}
	m := r.Clone()
	m.Subject, m.LoginHint, m.AuthTime = user.Subject, user.Display, now
	// A device request has no auth_req_id: the ID token must not carry the
	// device_code in the CIBA claim that the Minter sets from the ID.
	m.ID = ""
	body, err := mintApproved(ctx, d.minter, m, now, shown)
	if err != nil {
		return err
	}
	sealed, err := d.sealer.Seal(body, []byte(r.ID))
	if err != nil {
		return &Error{Code: CodeServerError, Description: "the tokens could not be encrypted", Err: err}
	}
	rec := ""
	if record != nil {
		signed := r.Clone()
		signed.Subject, signed.LoginHint = user.Subject, user.Display
		if rec, err = record(signed, now); err != nil {
			return &Error{Code: CodeServerError, Description: "the approval record could not be signed", Err: err}
		}
	}
	a := approval{at: now, authTime: now, sealed: sealed, shown: &shown, record: rec}
	_, err = d.store.UpdateRequest(ctx, r.ID, func(cur *AuthRequest) error {
		return a.apply(cur, func(cur *AuthRequest) { cur.Subject, cur.LoginHint = user.Subject, user.Display })
	})
	if err != nil {
		return d.transitionError("approve device request", err)
	}
	d.logApproved(ctx, "device request approved", r.ClientID, user.Subject, shown)
	return nil
}

// Deny records the user's refusal of device request r.
func (d *Device) Deny(ctx context.Context, r *AuthRequest, reason string) error {
	return d.decisions.Deny(ctx, r.ID, reason)
}

// Poll answers a device access token request (RFC 8628 §3.4, §3.5) of the
// authenticated client c: the tokens exactly once, or authorization_pending,
// slow_down (the interval grows by 5 s and stays grown), access_denied,
// expired_token, or invalid_grant for a code that is unknown, of another
// client, or already used. It is the CIBA poll path without long polling,
// which RFC 8628 clients do not expect. It is PollCert without a client
// certificate.
func (d *Device) Poll(ctx context.Context, c *Client, deviceCode string) ([]byte, error) {
	return d.PollCert(ctx, c, deviceCode, "")
}

// PollCert is Poll over a connection presenting the client certificate
// with x5t#S256 cert ("" for none): a device request bound to a
// certificate answers invalid_grant unless it is the same one (RFC 8705
// §3), and stays as it was.
func (d *Device) PollCert(ctx context.Context, c *Client, deviceCode, cert string) ([]byte, error) {
	return d.PollBound(ctx, c, deviceCode, Binding{Cert: cert})
}

// PollBound is PollCert with the keys the token request proved it holds:
// b.Cert as PollCert's cert, and b.JKT the DPoP proof's key ("" for
// none). A device request bound to a DPoP key (AuthRequest.DPoPJKT)
// answers invalid_grant, pending or not, to a poll without a proof of that
// key, and one that is not bound answers invalid_dpop_proof to a poll with
// a proof (keyMismatch); either stays as it was.
func (d *Device) PollBound(ctx context.Context, c *Client, deviceCode string, b Binding) ([]byte, error) {
	if deviceCode == "" {
		return nil, tokenError(CodeInvalidRequest, "device_code is required")
	}
	if !d.Enabled(c) {
		return nil, tokenError(CodeUnauthorizedClient, "client %q may not use the device authorization grant (its configuration lacks device_authorization: true)", c.ID)
	}
	// Not held: RFC 8628 clients do not expect long polling. The errors
	// name the device_code (Kind.idParam).
	q := PollQuery{ClientID: c.ID, Kind: KindDevice, Cert: b.Cert, JKT: b.JKT, Rule: d.poller.paceRule(d.now(), 0)}
	return d.poller.poll(ctx, c, deviceCode, q)
}

// newDeviceRequest returns a new pending device grant request of client c
// for scopes, created at now, living for lifetime and polled every
// interval, with fresh random ids.
func newDeviceRequest(c *Client, scopes []string, now time.Time, lifetime, interval time.Duration) *AuthRequest {
	return &AuthRequest{
		ID:         randomID(24),
		ApprovalID: randomID(16),
		ClientID:   c.ID,
		Mode:       ModePoll,
		Kind:       KindDevice,
		Scopes:     scopes,
		CreatedAt:  now,
		ExpiresAt:  now.Add(lifetime),
		Interval:   interval,
		Status:     StatusPending,
	}
}
