package cibaup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// The device authorization grant (RFC 8628) at the IdP, for cibaproxy's
// device clients when the ciba upstream relays the device flow: one device
// authorization request per device request, and device access token
// requests made when package ciba's dispatcher says so. As for CIBA, the
// pacing lives in package ciba; this file makes one HTTP call per method.
//
// RFC 8628: https://www.rfc-editor.org/rfc/rfc8628

// grantDeviceCode is the grant type of the device access token request
// (RFC 8628 §3.4).
const grantDeviceCode = "urn:ietf:params:oauth:grant-type:device_code"

// ErrNoDeviceEndpoint is returned when the IdP's discovery document lists
// no device_authorization_endpoint: the IdP does not have the device grant.
var ErrNoDeviceEndpoint = errors.New("the identity provider's discovery lists no device_authorization_endpoint")

// DeviceAuthorizationEndpoint returns the IdP's device_authorization_endpoint
// (RFC 8628 §4). An IdP without one is ErrNoDeviceEndpoint; one whose
// discovery has not succeeded yet wraps ciba.ErrUnavailable.
func (u *Upstream) DeviceAuthorizationEndpoint(ctx context.Context) (string, error) {
	md, err := u.Metadata(ctx)
	if err != nil {
		return "", err
	}
	ep, _ := md["device_authorization_endpoint"].(string)
	if ep == "" {
		return "", fmt.Errorf("cibaup: issuer %q: %w", u.cfg.Issuer, ErrNoDeviceEndpoint)
	}
	if err := absURL("device_authorization_endpoint", ep); err != nil {
		return "", fmt.Errorf("cibaup: issuer %q: %w", u.cfg.Issuer, err)
	}
	return ep, nil
}

// StartDevice forwards a device authorization request (RFC 8628 §3.1) of
// cibaproxy client c to the IdP's device_authorization_endpoint,
// authenticated with the client's credentials there, and validates the
// answer (§3.2): device_code, user_code and verification_uri non-empty
// strings, verification_uri_complete absent or a string, expires_in a
// number of at least 1, interval absent or a non-negative number. An empty
// scope is not sent. The IdP's user_code and verification URIs are passed
// to the client unchanged. Errors are as for Start; an IdP without the
// endpoint is a server_error *ciba.Error wrapping ErrNoDeviceEndpoint.
func (u *Upstream) StartDevice(ctx context.Context, c *ciba.Client, scope string) (ciba.DeviceRelayStarted, error) {
	const op = "device authorization"
	clientID := c.ID
	creds, err := u.credentials(clientID)
	if err != nil {
		return ciba.DeviceRelayStarted{}, err
	}
	ep, err := u.DeviceAuthorizationEndpoint(ctx)
	if errors.Is(err, ErrNoDeviceEndpoint) {
		return ciba.DeviceRelayStarted{}, &ciba.Error{Code: ciba.CodeServerError, Description: "the identity provider does not offer the device authorization grant", Err: err}
	}
	if err != nil {
		return ciba.DeviceRelayStarted{}, err
	}
	form := url.Values{}
	if scope != "" {
		form.Set("scope", scope)
	}
	status, body, err := u.post(ctx, op, clientID, ep, creds, form)
	if err != nil {
		return ciba.DeviceRelayStarted{}, err
	}
	if status != http.StatusOK {
		return ciba.DeviceRelayStarted{}, refusal(op, clientID, creds, status, body, []string{creds.ClientSecret})
	}
	s, err := parseDeviceStarted(body)
	if err != nil {
		return ciba.DeviceRelayStarted{}, unavailable(fmt.Errorf("cibaup: %s for client %q: the identity provider's answer is not usable: %w", op, clientID, err))
	}
	return s, nil
}

// parseDeviceStarted validates an RFC 8628 §3.2 response. Its errors never
// quote the device_code.
func parseDeviceStarted(body []byte) (ciba.DeviceRelayStarted, error) {
	var a struct {
		DeviceCode  any `json:"device_code"`
		UserCode    any `json:"user_code"`
		URI         any `json:"verification_uri"`
		URIComplete any `json:"verification_uri_complete"`
		ExpiresIn   any `json:"expires_in"`
		Interval    any `json:"interval"`
	}
	if err := json.Unmarshal(body, &a); err != nil {
		return ciba.DeviceRelayStarted{}, errors.New("not a JSON object")
	}
	var s ciba.DeviceRelayStarted
	for _, f := range []struct {
		name string
		v    any
		to   *string
	}{{"device_code", a.DeviceCode, &s.DeviceCode}, {"user_code", a.UserCode, &s.UserCode}, {"verification_uri", a.URI, &s.VerificationURI}} {
		str, ok := f.v.(string)
		if !ok || str == "" {
			return ciba.DeviceRelayStarted{}, fmt.Errorf("%s is not a non-empty string", f.name)
		}
		*f.to = str
	}
	if a.URIComplete != nil {
		str, ok := a.URIComplete.(string)
		if !ok {
			return ciba.DeviceRelayStarted{}, errors.New("verification_uri_complete is not a string")
		}
		s.VerificationURIComplete = str
	}
	exp, ok := a.ExpiresIn.(float64)
	// At least one second: the client is told whole seconds, and a
	// fraction of a nanosecond would become a zero lifetime.
	if !ok || !(exp >= 1 && exp <= maxSeconds) {
		return ciba.DeviceRelayStarted{}, errors.New("expires_in is not a number of seconds of at least 1")
	}
	s.ExpiresIn = seconds(exp)
	if a.Interval != nil {
		interval, ok := a.Interval.(float64)
		if !ok || !(interval >= 0 && interval <= maxSeconds) {
			return ciba.DeviceRelayStarted{}, errors.New("interval is not a non-negative number of seconds")
		}
		s.Interval = seconds(interval)
	}
	return s, nil
}

// PollDevice makes one device access token request (RFC 8628 §3.4:
// grant_type urn:ietf:params:oauth:grant-type:device_code, device_code)
// with client c's credentials at the IdP. Answers map as for Poll:
// tokens, authorization_pending and slow_down (§3.5) are results;
// access_denied, expired_token and the other codes for the client are
// *ciba.Error; 5xx, 429, timeouts and unusable answers wrap
// ciba.ErrUnavailable. No error carries the device_code.
func (u *Upstream) PollDevice(ctx context.Context, c *ciba.Client, deviceCode string) (ciba.RelayResult, error) {
	return u.pollToken(ctx, "device token request", c.ID, "device_code", url.Values{"grant_type": {grantDeviceCode}, "device_code": {deviceCode}})
}
