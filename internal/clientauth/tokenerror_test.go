package clientauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	gojose "github.com/go-jose/go-jose/v4"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/jose"
)

// TestTokenError checks the one mapping of jose's errors to the protocol
// errors answered: each token and fault gives its code, status and
// description.
func TestTokenError(t *testing.T) {
	t.Parallel()
	cause := errors.New("cause")
	fault := func(token string, kind error, reason string) *jose.ValidationError {
		return &jose.ValidationError{Token: token, Kind: kind, Reason: reason, Err: cause}
	}
	const retry = ": the replay check is unavailable; try again later"
	for _, tc := range []struct {
		name   string
		err    error
		code   ciba.ErrorCode
		status int
		desc   string
	}{
		{"an invalid request object", fault(jose.TokenRequestObject, jose.ErrInvalid, "jti is missing"),
			ciba.CodeInvalidRequest, 400, "request object: jti is missing"},
		{"an expired request object", fault(jose.TokenRequestObject, jose.ErrExpired, "expired at 2026-03-01T11:58:00Z"),
			ciba.CodeInvalidRequest, 400, "request object: expired at 2026-03-01T11:58:00Z"},
		{"a replayed request object", fault(jose.TokenRequestObject, jose.ErrReplay, `jti "x" was already used`),
			ciba.CodeInvalidRequest, 400, `request object: jti "x" was already used`},
		{"an invalid client assertion", fault(jose.TokenClientAssertion, jose.ErrInvalid, "the signature does not verify with the keys of client \"c\""),
			ciba.CodeInvalidClient, 401, `client assertion: the signature does not verify with the keys of client "c"`},
		{"an expired client assertion", fault(jose.TokenClientAssertion, jose.ErrExpired, "expired at 2026-03-01T11:58:00Z"),
			ciba.CodeInvalidClient, 401, "client assertion: expired at 2026-03-01T11:58:00Z"},
		{"a replayed client assertion", fault(jose.TokenClientAssertion, jose.ErrReplay, `jti "x" was already used`),
			ciba.CodeInvalidClient, 401, `client assertion: jti "x" was already used`},
		{"an invalid login_hint_token", fault(jose.TokenLoginHint, jose.ErrInvalid, "iss is missing"),
			ciba.CodeInvalidRequest, 400, "login_hint_token: iss is missing"},
		{"an expired login_hint_token (CIBA §13)", fault(jose.TokenLoginHint, jose.ErrExpired, "expired at 2026-03-01T11:00:00Z"),
			ciba.CodeExpiredLoginHintToken, 400, "login_hint_token: expired at 2026-03-01T11:00:00Z"},
		{"an invalid id_token_hint", fault(jose.TokenIDTokenHint, jose.ErrInvalid, "sub is missing"),
			ciba.CodeInvalidRequest, 400, "id_token_hint: sub is missing"},
		{"an expired id_token_hint is no login_hint_token", fault(jose.TokenIDTokenHint, jose.ErrExpired, "expired at x"),
			ciba.CodeInvalidRequest, 400, "id_token_hint: expired at x"},
		{"a replay store that is down", fault(jose.TokenRequestObject, jose.ErrReplayCheck, "the replay check could not be made"),
			ciba.CodeServerError, 500, "internal error"},
		{"a replay store that is unavailable", &jose.ValidationError{Token: jose.TokenClientAssertion, Kind: jose.ErrReplayCheck,
			Reason: "the replay check could not be made", Err: fmt.Errorf("recording: %w", ciba.ErrUnavailable)},
			ciba.CodeTemporarilyUnavailable, 503, "client assertion" + retry},
		{"an unusable policy", fault(jose.TokenLoginHint, jose.ErrPolicy, "policy: ClientID is required"),
			ciba.CodeServerError, 500, "internal error"},
		{"an error of another kind", cause, ciba.CodeServerError, 500, "internal error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := ciba.AsError(tokenError(tc.err))
			if e.Code != tc.code || e.HTTPStatus() != tc.status || e.Description != tc.desc {
				t.Fatalf("tokenError = %s %d %q, want %s %d %q", e.Code, e.HTTPStatus(), e.Description, tc.code, tc.status, tc.desc)
			}
			if !errors.Is(e, cause) && !errors.Is(e, ciba.ErrUnavailable) {
				t.Fatalf("the cause is lost: %v", e)
			}
		})
	}
}

// downStore is a Records whose store cannot be reached.
type downStore struct{}

func (downStore) PutRecord(context.Context, string, string, []byte, time.Duration) error {
	return fmt.Errorf("put: %w", ciba.ErrUnavailable)
}

// TestTokenErrorThroughTheAdapters checks the mapping where it is applied:
// request objects and client assertions answered through a replay store
// that is down, and a replayed request object.
func TestTokenErrorThroughTheAdapters(t *testing.T) {
	reg, err := NewRegistry(newReg(t, testOpts{Client: ciba.Client{ID: "signed"}, JWKS: clientJWKS(), Methods: []string{MethodPrivateKeyJWT}}))
	if err != nil {
		t.Fatal(err)
	}
	c := &ciba.Client{ID: "signed"}
	t.Run("a replayed request object is invalid_request", func(t *testing.T) {
		a := &Authenticator{Registry: reg, RequestObjects: jose.RequestObjectPolicy{Issuer: issuer, Replay: &memReplay{seen: map[string]bool{}}}}
		raw := signClaims(t, gojose.RS256, clientKey(), "k1", requestObject("signed"))
		if _, err := a.RequestObject(t.Context(), c, raw); err != nil {
			t.Fatal(err)
		}
		_, err := a.RequestObject(t.Context(), c, raw)
		if e := ciba.AsError(err); e.Code != ciba.CodeInvalidRequest || !strings.Contains(e.Description, "request object: jti") || !strings.Contains(e.Description, "was already used") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("a request object with the replay store down is temporarily_unavailable", func(t *testing.T) {
		a := &Authenticator{Registry: reg, RequestObjects: jose.RequestObjectPolicy{Issuer: issuer, Replay: NewStoreReplay(downStore{}, "jti")}}
		_, err := a.RequestObject(t.Context(), c, signClaims(t, gojose.RS256, clientKey(), "k1", requestObject("signed")))
		if e := ciba.AsError(err); e.Code != ciba.CodeTemporarilyUnavailable || e.Description != "request object: the replay check is unavailable; try again later" {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("a client assertion with the replay store down is temporarily_unavailable, no challenge", func(t *testing.T) {
		r, err := NewRegistry(newReg(t, testOpts{Client: ciba.Client{ID: "signed"}, JWKS: clientJWKS(), Methods: []string{MethodPrivateKeyJWT}}))
		if err != nil {
			t.Fatal(err)
		}
		r.AssertionPolicy = jose.AssertionPolicy{Issuer: issuer, Replay: NewStoreReplay(downStore{}, "jti")}
		req := httptest.NewRequest(http.MethodPost, tokenEndpoint, nil)
		_, err = r.Authenticate(t.Context(), req, assertionForm(assertion(t, clientKey(), "signed", tokenEndpoint, nil)), tokenEndpoint)
		if e := ciba.AsError(err); e.Code != ciba.CodeTemporarilyUnavailable || WWWAuthenticate(err) != "" {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("an expired client assertion is invalid_client, 401", func(t *testing.T) {
		r, err := NewRegistry(newReg(t, testOpts{Client: ciba.Client{ID: "signed"}, JWKS: clientJWKS(), Methods: []string{MethodPrivateKeyJWT}}))
		if err != nil {
			t.Fatal(err)
		}
		r.AssertionPolicy = jose.AssertionPolicy{Issuer: issuer, Replay: &memReplay{seen: map[string]bool{}}}
		req := httptest.NewRequest(http.MethodPost, tokenEndpoint, nil)
		form := assertionForm(assertion(t, clientKey(), "signed", tokenEndpoint, func(c map[string]any) { c["exp"] = time.Now().Add(-time.Hour).Unix() }))
		_, err = r.Authenticate(t.Context(), req, form, tokenEndpoint)
		var ae *AuthError
		if e := ciba.AsError(err); !errors.As(err, &ae) || e.Code != ciba.CodeInvalidClient || e.HTTPStatus() != http.StatusUnauthorized || !strings.HasPrefix(e.Description, "client assertion: expired at ") {
			t.Fatalf("err = %v", err)
		}
	})
}
