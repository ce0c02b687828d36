package cibaup

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/test/idp"
)

// TestRelaysAuthorizationDetailsToNodeOIDCProvider relays a request with
// authorization_details (RFC 9396) to a real CIBA identity provider
// (node-oidc-provider, test/idp): the IdP keeps the details with its
// request, and its token response's authorization_details come back
// unchanged. node-oidc-provider's Rich Authorization Requests feature
// checks details at its backchannel authentication endpoint (its type
// list, per client) but does not carry them into the CIBA grant's tokens
// by itself: test/idp's approval grants them as asked. A type the IdP does not support is its refusal,
// invalid_authorization_details, passed on to the client. The resource
// indicator (RFC 8707) is relayed too (node-oidc-provider requires one
// with details).
func TestRelaysAuthorizationDetailsToNodeOIDCProvider(t *testing.T) {
	const secret = "rar-secret-do-not-leak"
	p := idp.Start(t, idp.Config{
		Clients: []idp.Client{
			{ID: "relay-rar", Secret: secret, GrantTypes: []string{idp.GrantCIBA}, BackchannelTokenDeliveryMode: "poll"},
		},
		Accounts:     []idp.Account{{ID: "alice", Email: "alice@example.com", EmailVerified: true}},
		CIBAInterval: 1,
		RARTypes:     []string{"payment_initiation"},
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	u, err := New(ctx, Config{Issuer: p.Issuer(), Clients: map[string]Credentials{"rar": {ClientID: "relay-rar", ClientSecret: secret}}})
	if err != nil {
		t.Fatal(err)
	}
	const details = `[{"type":"payment_initiation","actions":["initiate"],"instructedAmount":{"amount":"50.00","currency":"EUR"},"creditorName":"ACME"}]`

	t.Run("details reach the IdP and come back in its token response", func(t *testing.T) {
		s, err := u.Start(ctx, clientOf("rar"), ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: "alice@example.com"}, AuthorizationDetails: details,
			Resources: []string{"https://payments.example.test/"}}, "")
		if err != nil {
			t.Fatalf("Start: %v", err)
		}
		pending, err := p.Pending(ctx)
		if err != nil || len(pending) != 1 {
			t.Fatalf("pending at the IdP = %+v, %v; want one request", pending, err)
		}
		if !sameJSON(t, pending[0].AuthorizationDetails, details) {
			t.Fatalf("the IdP's request holds authorization_details %s; want %s", pending[0].AuthorizationDetails, details)
		}
		if r, _ := json.Marshal(pending[0].Resource); string(r) != `"https://payments.example.test/"` {
			t.Fatalf("the IdP's request holds resource %s; want the one sent", r)
		}
		if _, err := p.ApproveCIBA(ctx, s.ID); err != nil {
			t.Fatalf("ApproveCIBA: %v", err)
		}
		res, err := u.Poll(ctx, clientOf("rar"), s.ID)
		if err != nil {
			t.Fatalf("Poll: %v", err)
		}
		var tr struct {
			AccessToken          string          `json:"access_token"`
			AuthorizationDetails json.RawMessage `json:"authorization_details"`
		}
		if err := json.Unmarshal(res.Tokens, &tr); err != nil || tr.AccessToken == "" {
			t.Fatalf("Poll tokens = %s (%v); want the IdP's tokens", res.Tokens, err)
		}
		if !sameJSON(t, tr.AuthorizationDetails, details) {
			t.Fatalf("token response authorization_details = %s; want the IdP's, %s", tr.AuthorizationDetails, details)
		}
	})

	t.Run("a type the IdP does not support is its invalid_authorization_details", func(t *testing.T) {
		_, err := u.Start(ctx, clientOf("rar"), ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: "alice@example.com"},
			AuthorizationDetails: `[{"type":"account_information"}]`}, "")
		var pe *ciba.Error
		if !errors.As(err, &pe) || pe.Code != ciba.CodeInvalidAuthorizationDetails {
			t.Fatalf("Start = %v; want the IdP's invalid_authorization_details", err)
		}
	})
}

// sameJSON reports whether got and want are the same JSON value.
func sameJSON(t *testing.T, got json.RawMessage, want string) bool {
	t.Helper()
	var a, b any
	if json.Unmarshal(got, &a) != nil || json.Unmarshal([]byte(want), &b) != nil {
		return false
	}
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}
