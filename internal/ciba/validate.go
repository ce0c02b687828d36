package ciba

import (
	"context"
	"log/slog"
	"net/netip"
)

// Origin is where a backchannel authentication request came from, as the
// HTTP layer saw it: what the validation hook is told besides the request.
type Origin struct {
	// Addr is the consumption device's address (the TCP peer, or behind
	// trusted proxies the address they forward); invalid when unknown.
	Addr netip.Addr
	// RequestID is the HTTP request's correlation id (X-Request-Id).
	RequestID string
}

type originKey struct{}

// WithOrigin returns ctx carrying o, for Service.Authorize.
func WithOrigin(ctx context.Context, o Origin) context.Context {
	return context.WithValue(ctx, originKey{}, o)
}

// OriginFrom returns the Origin ctx carries, or the zero Origin.
func OriginFrom(ctx context.Context) Origin {
	o, _ := ctx.Value(originKey{}).(Origin)
	return o
}

// ValidationObserver is an Observer that also counts the validation hook's
// outcomes (package metrics).
type ValidationObserver interface {
	// ObserveValidation counts one call of the hook by result: allow, deny
	// or error (whatever the failure policy then did).
	ObserveValidation(result string)
}

// maxDenyReason bounds the hook's reason in error_description, in bytes
// once made fit for it (SafeDescriptionMax).
const maxDenyReason = 200

// validate asks the validation hook about a request of client c that
// passed every other check and is about to be stored (the seed's step 3).
// subject is the resolved user, "" for a relayed request. It returns nil to
// go on, access_denied when the hook refuses, and, when no verdict could be
// had, temporarily_unavailable (fail closed) or nil (fail open). details
// are the request's authorization_details as checked, canonical JSON ("" for
// none).
func (a *Acceptor) validate(ctx context.Context, c *Client, p AuthParams, subject string, scopes, acr []string, details string) *Error {
	if a.validator == nil || c.SkipValidation {
		return nil
	}
	o := OriginFrom(ctx)
	v := Validation{
		RequestID: o.RequestID, ClientID: c.ID, ClientAddr: o.Addr, Subject: subject,
		Scopes: scopes, ACRValues: acr, BindingMessage: p.BindingMessage,
		AuthzDetails: details, ActsForUser: c.ActsForUser,
	}
	switch {
	case p.Hint.LoginHint != "":
		v.HintType = "login_hint"
		if subject == "" {
			v.LoginHint = p.Hint.LoginHint
		}
	case p.Hint.LoginHintToken != "":
		v.HintType = "login_hint_token"
	default:
		v.HintType = "id_token_hint"
	}
	if p.RequestedExpiry != "" {
		v.RequestedExpiry, _ = parseExpiry(p.RequestedExpiry) // validated by the caller
	}
	return a.judge(ctx, c, v)
}

// validateDevice asks the validation hook about a device authorization
// request (RFC 8628 §3.1) of client c that carries authorization_details
// (details, canonical JSON) and passed every other check: the hook judges
// the details there as at bc-authorize, so that a policy on them ("no
// payments above 1000 EUR") cannot be bypassed through the device grant.
// The request names no user: v.Grant is GrantDevice, with no hint and no
// subject. A device request without details is not asked about (nothing
// for a consumption-device policy to judge). Answers as validate.
func (a *Acceptor) validateDevice(ctx context.Context, c *Client, scopes []string, details string) *Error {
	if details == "" || a.validator == nil || c.SkipValidation {
		return nil
	}
	o := OriginFrom(ctx)
	return a.judge(ctx, c, Validation{
		RequestID: o.RequestID, ClientID: c.ID, ClientAddr: o.Addr, Grant: GrantDevice,
		Scopes: scopes, AuthzDetails: details, ActsForUser: c.ActsForUser,
	})
}

// judge sends v to the validation hook and turns its verdict into
// validate's answer.
func (a *Acceptor) judge(ctx context.Context, c *Client, v Validation) *Error {
	verdict, err := a.validator.Validate(ctx, v)
	switch {
	case err != nil:
		a.observeValidation("error")
		if a.validationFailOpen {
			a.log.LogAttrs(ctx, slog.LevelWarn, "validation hook failed; request accepted (validation.fail: open)",
				slog.String("client_id", c.ID), slog.Any("error", err))
			return nil
		}
		a.log.LogAttrs(ctx, slog.LevelWarn, "validation hook failed; request refused (validation.fail: closed)",
			slog.String("client_id", c.ID), slog.Any("error", err))
		return &Error{Code: CodeTemporarilyUnavailable, Err: err,
			Description: "the consumption-device validation service is unavailable; try again later"}
	case !verdict.Allow:
		a.observeValidation("deny")
		reason := SafeDescriptionMax(verdict.Reason, maxDenyReason)
		a.log.LogAttrs(ctx, slog.LevelInfo, "auth request refused by the validation hook",
			slog.String("client_id", c.ID), slog.String("reason", reason))
		desc := "the request was refused by the consumption-device validation policy"
		if reason != "" {
			desc += ": " + reason
		}
		return &Error{Code: CodeAccessDenied, Description: desc}
	}
	a.observeValidation("allow")
	return nil
}

// observeValidation counts one outcome of the validation hook.
func (a *Acceptor) observeValidation(result string) {
	if o, ok := a.observer.(ValidationObserver); ok {
		o.ObserveValidation(result)
	}
}
