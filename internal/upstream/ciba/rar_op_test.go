package cibaup

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	upidp "github.com/cibaproxy/cibaproxy/internal/upstream/idp"
	"github.com/cibaproxy/cibaproxy/test/idp"
)

// TestRelaysAuthorizationDetailsToNodeOIDCProvider relays a request with
// authorization_details (RFC 9396) to a real CIBA identity provider
// (node-oidc-provider, test/idp): the IdP keeps the details with its
// request, and its token response's authorization_details come back
// unchanged. A type the IdP's discovery does not list in
// authorization_details_types_supported is refused before anything is sent
// (the IdP would drop it). node-oidc-provider's Rich Authorization
// Requests feature checks details at its backchannel authentication endpoint (its type
// list, per client) but does not carry them into the CIBA grant's tokens
// by itself: test/idp's approval grants them as asked. The resource
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
	u, err := New(ctx, Config{Issuer: p.Issuer(), Clients: map[string]Credentials{"rar": {Credentials: upidp.Credentials{ClientID: "relay-rar", ClientSecret: secret}}}})
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

	t.Run("a type the IdP's discovery does not list is refused, not sent", func(t *testing.T) {
		_, err := u.Start(ctx, clientOf("rar"), ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: "alice@example.com"},
			AuthorizationDetails: `[{"type":"account_information"}]`}, "")
		var pe *ciba.Error
		if !errors.As(err, &pe) || pe.Code != ciba.CodeInvalidAuthorizationDetails || !strings.Contains(pe.Description, `"account_information"`) {
			t.Fatalf("Start = %v; want invalid_authorization_details naming the type", err)
		}
		if pending, err := p.Pending(ctx); err != nil || len(pending) != 0 {
			t.Fatalf("pending at the IdP = %+v, %v; want none", pending, err)
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

// TestStartRelaysDetailsAndTargets: details go to the IdP's bc-authorize
// as received (checked and canonical by then), each resource and the
// audience too; details of a type the IdP's discovery does not list, or
// with no list at all, are invalid_authorization_details and nothing is
// sent.
func TestStartRelaysDetailsAndTargets(t *testing.T) {
	const details = `[{"amount":"5","type":"payment_initiation"}]`
	p := ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: "alice"}, AuthorizationDetails: details,
		Resources: []string{"https://a.example/", "https://b.example/"}, Audience: "my-api"}
	t.Run("listed", func(t *testing.T) {
		op := newTestIdP(t)
		op.authzTypes = []string{"payment_initiation"}
		u, _ := newTestUpstream(t, op, nil)
		if _, err := u.Start(context.Background(), clientOf(cibaClient), p, ""); err != nil {
			t.Fatalf("Start: %v", err)
		}
		got := op.last().Form
		if got.Get("authorization_details") != details || got.Get("audience") != "my-api" ||
			strings.Join(got["resource"], " ") != "https://a.example/ https://b.example/" {
			t.Fatalf("form sent: %v", got)
		}
	})
	for name, types := range map[string][]string{"another type": {"account_information"}, "no list": nil} {
		t.Run(name, func(t *testing.T) {
			op := newTestIdP(t)
			op.authzTypes = types
			u, _ := newTestUpstream(t, op, nil)
			_, err := u.Start(context.Background(), clientOf(cibaClient), p, "")
			var pe *ciba.Error
			if !errors.As(err, &pe) || pe.Code != ciba.CodeInvalidAuthorizationDetails || !strings.Contains(pe.Description, "authorization_details_types_supported") {
				t.Fatalf("Start = %v; want invalid_authorization_details", err)
			}
			op.mu.Lock()
			n := len(op.requests)
			op.mu.Unlock()
			if n != 0 {
				t.Fatalf("%d requests reached the IdP", n)
			}
		})
	}
}
