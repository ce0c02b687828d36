package cibaup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/upstream/idp"
)

// grantCIBA is the grant type of the CIBA token request (CIBA §10.1).
const grantCIBA = "urn:openid:params:grant-type:ciba"

// The Upstream is the domain's relay: its requests and answers are
// ciba.AuthParams, ciba.RelayStarted and ciba.RelayResult.
var _ ciba.DeviceRelay = (*Upstream)(nil)

// maxSeconds bounds expires_in and interval so they fit a time.Duration
// with room to spare (about 68 years).
const maxSeconds = math.MaxInt32

// maxDescription bounds the IdP's error_description passed to a client.
const maxDescription = 200

// Start forwards a backchannel authentication request of cibaproxy client c
// to the IdP's backchannel_authentication_endpoint (CIBA §7.1),
// authenticated with the client's credentials there, and validates the
// acknowledgement (§7.3): auth_req_id a non-empty string, expires_in a
// number of at least 1, interval absent or a non-negative number. The
// client's parameters p are passed on unchanged (authorization_details as
// checked at bc-authorize, resource and audience too); empty ones are not
// sent.
// p.ClientNotificationToken is the client's own bearer for cibaproxy's
// pings and never goes upstream: notificationToken, cibaproxy's for the
// IdP's pings, is sent as client_notification_token for a client whose
// Credentials.Ping is set (secret: never logged).
//
// Details of a type the IdP's discovery does not list in
// authorization_details_types_supported are invalid_authorization_details
// (ciba.CheckProviderDetailTypes), not sent.
//
// Errors: a client without credentials is unauthorized_client; the IdP's
// refusal is a *ciba.Error with the IdP's code (see Poll for which codes);
// an IdP that cannot be reached, fails (5xx, 429) or answers something
// unusable wraps ciba.ErrUnavailable; the IdP refusing cibaproxy's
// credentials (invalid_client) is a plain error, cibaproxy's
// misconfiguration.
func (u *Upstream) Start(ctx context.Context, c *ciba.Client, p ciba.AuthParams, notificationToken string) (ciba.RelayStarted, error) {
	const op = "backchannel authentication"
	clientID := c.ID
	creds, err := u.credentials(clientID)
	if err != nil {
		return ciba.RelayStarted{}, err
	}
	idp, err := u.provider(ctx)
	if err != nil {
		return ciba.RelayStarted{}, err
	}
	if p.AuthorizationDetails != "" {
		// An IdP that does not know them would drop them.
		if e := ciba.CheckProviderDetailTypes(p.AuthorizationDetails, idp.authzTypes); e != nil {
			return ciba.RelayStarted{}, e
		}
	}
	form := url.Values{}
	for _, kv := range [][2]string{
		{"scope", p.Scope},
		{"login_hint", p.Hint.LoginHint},
		{"login_hint_token", p.Hint.LoginHintToken},
		{"id_token_hint", p.Hint.IDTokenHint},
		{"binding_message", p.BindingMessage},
		{"user_code", p.UserCode},
		{"acr_values", p.ACRValues},
		{"requested_expiry", p.RequestedExpiry},
		// As checked at bc-authorize (RFC 9396): the IdP's token
		// response says what it granted, passed on unchanged.
		{"authorization_details", p.AuthorizationDetails},
		{"audience", p.Audience},
	} {
		if kv[1] != "" {
			form.Set(kv[0], kv[1])
		}
	}
	for _, r := range p.Resources {
		form.Add("resource", r)
	}
	if creds.Ping && notificationToken != "" {
		form.Set("client_notification_token", notificationToken)
	}
	hide := []string{creds.ClientSecret, notificationToken}
	status, body, err := u.post(ctx, op, clientID, idp.backchannelURL, creds, form)
	if err != nil {
		return ciba.RelayStarted{}, err
	}
	if status != http.StatusOK {
		return ciba.RelayStarted{}, refusal(op, clientID, creds, status, body, hide)
	}
	s, err := parseStarted(body)
	if err != nil {
		return ciba.RelayStarted{}, unavailable(fmt.Errorf("cibaup: %s for client %q: the identity provider's answer is not usable: %w", op, clientID, err))
	}
	return s, nil
}

// parseStarted validates a CIBA §7.3 acknowledgement. Its errors never
// quote the auth_req_id.
func parseStarted(body []byte) (ciba.RelayStarted, error) {
	var a struct {
		ID        any `json:"auth_req_id"`
		ExpiresIn any `json:"expires_in"`
		Interval  any `json:"interval"`
	}
	if err := json.Unmarshal(body, &a); err != nil {
		return ciba.RelayStarted{}, errors.New("not a JSON object")
	}
	id, ok := a.ID.(string)
	if !ok || id == "" {
		return ciba.RelayStarted{}, errors.New("auth_req_id is not a non-empty string")
	}
	exp, ok := a.ExpiresIn.(float64)
	// At least one second: the client is told whole seconds, and a
	// fraction of a nanosecond would become a zero lifetime.
	if !ok || !(exp >= 1 && exp <= maxSeconds) {
		return ciba.RelayStarted{}, errors.New("expires_in is not a number of seconds of at least 1")
	}
	var interval float64
	if a.Interval != nil {
		interval, ok = a.Interval.(float64)
		if !ok || !(interval >= 0 && interval <= maxSeconds) {
			return ciba.RelayStarted{}, errors.New("interval is not a non-negative number of seconds")
		}
	}
	return ciba.RelayStarted{ID: id, ExpiresIn: seconds(exp), Interval: seconds(interval)}, nil
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// Poll makes one token request for the IdP's request id (CIBA §10.1:
// grant_type urn:openid:params:grant-type:ciba, auth_req_id) with client
// c's credentials at the IdP. Tokens come back unchanged in
// ciba.RelayResult.Tokens (a JSON object with access_token and token_type
// is required); authorization_pending and slow_down (§11) are
// RelayResult.Pending and RelayResult.SlowDown, not errors.
//
// Any other OAuth error of the IdP that the client should see — the CIBA
// §11 and §13 codes and RFC 6749 §5.2's invalid_request, invalid_grant,
// invalid_scope and unauthorized_client, plus transaction_failed (§12) — is
// a *ciba.Error with the same code and the description "the identity
// provider answered: " followed by the IdP's, made safe and short.
// invalid_client, unsupported_grant_type and codes of no specification are
// cibaproxy's or the IdP's misconfiguration: a plain error, for the logs.
// server_error, temporarily_unavailable, 5xx, 429, timeouts, unreachable
// IdPs and unusable answers wrap ciba.ErrUnavailable. No error carries the
// auth_req_id.
func (u *Upstream) Poll(ctx context.Context, c *ciba.Client, id string) (ciba.RelayResult, error) {
	return u.pollToken(ctx, "token request", c.ID, "auth_req_id", url.Values{"grant_type": {grantCIBA}, "auth_req_id": {id}})
}

// pollToken makes one polling token request (CIBA §10.1 or RFC 8628 §3.4):
// form carries the grant and the IdP's id of the request under idParam.
// The answers map as Poll describes; no error carries the id.
func (u *Upstream) pollToken(ctx context.Context, op, clientID, idParam string, form url.Values) (ciba.RelayResult, error) {
	creds, err := u.credentials(clientID)
	if err != nil {
		return ciba.RelayResult{}, err
	}
	id := form.Get(idParam)
	if id == "" {
		return ciba.RelayResult{}, fmt.Errorf("cibaup: %s for client %q: no %s", op, clientID, idParam)
	}
	idp, err := u.provider(ctx)
	if err != nil {
		return ciba.RelayResult{}, err
	}
	status, body, err := u.post(ctx, op, clientID, idp.tokenURL, creds, form)
	if err != nil {
		return ciba.RelayResult{}, err
	}
	if status == http.StatusOK {
		if err := checkTokens(body); err != nil {
			return ciba.RelayResult{}, unavailable(fmt.Errorf("cibaup: %s for client %q: the identity provider's token response is not usable: %w", op, clientID, err))
		}
		return ciba.RelayResult{Tokens: body}, nil
	}
	if status >= 400 && status < 500 && status != http.StatusTooManyRequests {
		if oe, ok := parseOAuthError(body); ok {
			switch ciba.ErrorCode(oe.Code) {
			case ciba.CodeAuthorizationPending:
				return ciba.RelayResult{Pending: true}, nil
			case ciba.CodeSlowDown:
				return ciba.RelayResult{SlowDown: true}, nil
			}
		}
	}
	return ciba.RelayResult{}, refusal(op, clientID, creds, status, body, []string{creds.ClientSecret, id})
}

// checkTokens checks that body is a token response (RFC 6749 §5.1). Its
// errors never quote the body. The body goes to the client unchanged, so
// member names are matched exactly (a struct would also take
// "ACCESS_TOKEN", which the client would not find).
func checkTokens(body []byte) error {
	var tr map[string]any
	if err := json.Unmarshal(body, &tr); err != nil || tr == nil {
		return errors.New("not a JSON object")
	}
	if s, ok := tr["access_token"].(string); !ok || s == "" {
		return errors.New("access_token is not a non-empty string")
	}
	if s, ok := tr["token_type"].(string); !ok || s == "" {
		return errors.New("token_type is not a non-empty string")
	}
	return nil
}

// post sends form to endpoint with creds' client authentication
// (RFC 6749 §2.3.1) and returns the answer's status and body (at most
// maxBody bytes). Failing to get an answer wraps ciba.ErrUnavailable.
func (u *Upstream) post(ctx context.Context, op, clientID, endpoint string, creds Credentials, form url.Values) (int, []byte, error) {
	if creds.AuthMethod == idp.AuthMethodPost {
		form.Set("client_id", creds.ClientID)
		form.Set("client_secret", creds.ClientSecret)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return 0, nil, fmt.Errorf("cibaup: %s: endpoint %q: %w", op, endpoint, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "cibaproxy")
	if creds.AuthMethod != idp.AuthMethodPost {
		// RFC 6749 §2.3.1: both are form-urlencoded before Basic encoding.
		req.SetBasicAuth(url.QueryEscape(creds.ClientID), url.QueryEscape(creds.ClientSecret))
	}
	resp, err := u.http.Do(req)
	if err != nil {
		// *url.Error names the method and the endpoint, never the body.
		return 0, nil, unavailable(fmt.Errorf("cibaup: %s for client %q: %w", op, clientID, err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return 0, nil, unavailable(fmt.Errorf("cibaup: %s for client %q: read the answer: %w", op, clientID, err))
	}
	if len(body) > maxBody {
		return 0, nil, unavailable(fmt.Errorf("cibaup: %s for client %q: the identity provider's answer is larger than %d bytes", op, clientID, maxBody))
	}
	return resp.StatusCode, body, nil
}

// oauthError is an error answer of RFC 6749 §5.2.
type oauthError struct {
	Code        string `json:"error"`
	Description string `json:"error_description"`
}

func parseOAuthError(body []byte) (oauthError, bool) {
	var oe oauthError
	if err := json.Unmarshal(body, &oe); err != nil || oe.Code == "" {
		return oauthError{}, false
	}
	return oe, true
}

// refusal maps an answer other than success (see Poll). hide are values
// (secrets, the auth_req_id) removed from anything quoted of the IdP's
// description.
func refusal(op, clientID string, creds Credentials, status int, body []byte, hide []string) error {
	if status >= 500 || status == http.StatusTooManyRequests {
		return unavailable(fmt.Errorf("cibaup: %s for client %q: the identity provider answered HTTP %d", op, clientID, status))
	}
	oe, ok := parseOAuthError(body)
	if !ok {
		if status == http.StatusUnauthorized {
			return fmt.Errorf("cibaup: %s for client %q: the identity provider refused cibaproxy's credentials for it (client_id %q there): HTTP 401; check its client_secret and auth method",
				op, clientID, creds.ClientID)
		}
		return unavailable(fmt.Errorf("cibaup: %s for client %q: the identity provider answered HTTP %d without an OAuth error", op, clientID, status))
	}
	code := ciba.ErrorCode(oe.Code)
	desc := describe(oe, hide)
	switch {
	case code == ciba.CodeInvalidClient:
		return fmt.Errorf("cibaup: %s for client %q: the identity provider refused cibaproxy's credentials for it (client_id %q there): invalid_client (%q); check its client_secret and auth method",
			op, clientID, creds.ClientID, desc)
	case code == ciba.CodeServerError || code == ciba.CodeTemporarilyUnavailable:
		return unavailable(fmt.Errorf("cibaup: %s for client %q: the identity provider answered HTTP %d %s (%q)", op, clientID, status, code, desc))
	case forClient(code):
		return &ciba.Error{
			Code:        code,
			Description: "the identity provider answered: " + desc,
			Err:         fmt.Errorf("cibaup: %s for client %q: HTTP %d", op, clientID, status),
		}
	default:
		return fmt.Errorf("cibaup: %s for client %q: the identity provider answered HTTP %d with the unexpected error %q (%q)",
			op, clientID, status, ciba.SafeDescriptionMax(oe.Code, 64), desc)
	}
}

// forClient reports whether an IdP's error code is passed to the client:
// the codes of CIBA §11 and §13 and of RFC 6749 §5.2 that describe the
// client's request or the user's answer, transaction_failed (§12), and
// the refusals of what the request carries: invalid_authorization_details
// (RFC 9396 §5) and invalid_target (RFC 8707 §2).
func forClient(code ciba.ErrorCode) bool {
	switch code {
	case ciba.CodeInvalidRequest, ciba.CodeInvalidScope, ciba.CodeExpiredLoginHintToken,
		ciba.CodeUnknownUserID, ciba.CodeUnauthorizedClient, ciba.CodeMissingUserCode,
		ciba.CodeInvalidUserCode, ciba.CodeInvalidBindingMessage, ciba.CodeAccessDenied,
		ciba.CodeExpiredToken, ciba.CodeInvalidGrant, ciba.CodeTransactionFailed,
		ciba.CodeInvalidAuthorizationDetails, ciba.CodeInvalidTarget:
		return true
	}
	return false
}

// describe makes the IdP's error_description (or, without one, its code)
// fit for a client and a log: the hidden values removed, RFC 6749 §5.2's
// character set, at most maxDescription bytes.
func describe(oe oauthError, hide []string) string {
	d := oe.Description
	if d == "" {
		d = oe.Code
	}
	for _, h := range hide {
		if h != "" {
			d = strings.ReplaceAll(d, h, "[redacted]")
		}
	}
	return ciba.SafeDescriptionMax(d, maxDescription)
}
