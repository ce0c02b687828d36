package ciba

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// The device grant relayed to an upstream that has it (the ciba upstream
// with an IdP whose discovery lists device_authorization_endpoint): the
// device request is forwarded once, the upstream's user_code and
// verification URIs go to the client unchanged (the user verifies at the
// upstream), the upstream's device_code is sealed in RelayState.ID like a
// relayed auth_req_id, and the client gets cibaproxy's own device_code (the
// request's ID). The upstream is then polled by pollUpstream, under the same
// lease and pacing as a relayed CIBA request, so its token requests stay at
// most 1 + lifetime/interval whatever the device does; the device's polls
// are answered from the store (Device.Poll).

// deviceRelay returns the service's relay as a DeviceRelay, or nil when
// the service relays nothing or its relay has no device grant.
func (rl *Relayer) deviceRelay() DeviceRelay {
	dr, _ := rl.upstream.(DeviceRelay)
	return dr
}

// startDevice forwards the device authorization request of client c
// (scopes already checked) to the upstream and stores its counterpart,
// with the device grant's expiry and interval (DeviceConfig).
func (rl *Relayer) startDevice(ctx context.Context, dr DeviceRelay, c *Client, scope string, scopes []string, expiry, interval time.Duration) (*DeviceAuthResponse, error) {
	now := rl.now()
	started, err := dr.StartDevice(ctx, c, scope)
	if err != nil {
		return nil, rl.upstreamError("relay device authorization", err)
	}
	// Never outlive the upstream's device_code: its tokens could not be had.
	lifetime := min(expiry, started.ExpiresIn)
	if lifetime <= 0 || started.UserCode == "" || started.VerificationURI == "" || started.DeviceCode == "" {
		rl.log.Error("relay: the upstream's device authorization response is not usable", slog.String("client_id", c.ID))
		return nil, &Error{Code: CodeServerError, Description: "the identity provider answered an unusable device authorization response"}
	}
	upInterval := started.Interval
	if upInterval <= 0 {
		upInterval = defaultRelayInterval
	}
	r := newDeviceRequest(c, scopes, now, lifetime, interval)
	r.TraceParent = rl.trace(ctx)
	sealed, err := rl.sealer.Seal([]byte(started.DeviceCode), relayAD(r.ID))
	if err != nil {
		return nil, &Error{Code: CodeServerError, Description: "the request could not be stored", Err: err}
	}
	r.Relay = RelayState{ID: sealed, Interval: upInterval, NextPoll: now.Add(upInterval)}
	if err := rl.store.CreateRequest(ctx, r); err != nil {
		return nil, rl.storeError("create device request", err)
	}
	rl.log.LogAttrs(ctx, slog.LevelInfo, "device request relayed",
		slog.String("client_id", c.ID), slog.Duration("lifetime", lifetime), slog.Duration("upstream_interval", upInterval))
	rl.sched.schedule(r.ID, r.Relay.NextPoll)
	return &DeviceAuthResponse{
		DeviceCode:              r.ID,
		UserCode:                started.UserCode,
		VerificationURI:         started.VerificationURI,
		VerificationURIComplete: started.VerificationURIComplete,
		ExpiresIn:               int64(lifetime / time.Second),
		Interval:                int64(interval / time.Second),
	}, nil
}

// errNoDeviceRelay is a relayed device request whose service's relay has
// no device grant (a configuration changed under a stored request).
var errNoDeviceRelay = errors.New("ciba: the upstream does not relay the device grant")

// pollRelayed makes the one upstream token request of relayed request r for
// its upstream id: the CIBA grant, or the device_code grant for a device
// request.
func (rl *Relayer) pollRelayed(ctx context.Context, r *AuthRequest, c *Client, upstreamID string) (RelayResult, error) {
	if r.Kind != KindDevice {
		return rl.upstream.Poll(ctx, c, upstreamID)
	}
	dr := rl.deviceRelay()
	if dr == nil {
		return RelayResult{}, errNoDeviceRelay
	}
	return dr.PollDevice(ctx, c, upstreamID)
}
