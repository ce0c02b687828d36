package oidc

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/upstream/idp/idptest"
)

const testDetails = `[{"type":"payment_initiation","instructedAmount":{"amount":"50.00","currency":"EUR"}}]`

// TestAuthzDetailsNeedTheIdPsType: details whose types the IdP's discovery
// lists in authorization_details_types_supported pass; any other type, or
// an IdP that lists none, is invalid_authorization_details naming the type
// (refused at bc-authorize, never dropped).
func TestAuthzDetailsNeedTheIdPsType(t *testing.T) {
	client := &ciba.Client{ID: cibaClient}
	t.Run("listed", func(t *testing.T) {
		op := newTestOP(t)
		op.set(func(op *testOP) { op.authzTypes = []string{"account_information", "payment_initiation"} })
		u, _ := newTestUpstream(t, op, nil)
		if err := u.CheckAuthzDetails(context.Background(), client, testDetails); err != nil {
			t.Fatalf("CheckAuthzDetails = %v; want nil for a type the IdP lists", err)
		}
	})
	for name, types := range map[string][]string{"another type": {"account_information"}, "no list": nil} {
		t.Run(name, func(t *testing.T) {
			op := newTestOP(t)
			op.set(func(op *testOP) { op.authzTypes = types })
			u, _ := newTestUpstream(t, op, nil)
			err := u.CheckAuthzDetails(context.Background(), client, testDetails)
			var pe *ciba.Error
			if !errors.As(err, &pe) || pe.Code != ciba.CodeInvalidAuthorizationDetails || !strings.Contains(pe.Description, `"payment_initiation"`) ||
				!strings.Contains(pe.Description, "authorization_details_types_supported") {
				t.Fatalf("CheckAuthzDetails = %v; want invalid_authorization_details naming the type and the discovery member", err)
			}
		})
	}
	t.Run("IdP down", func(t *testing.T) {
		op := newTestOP(t)
		op.set(func(op *testOP) { op.discoveryDown = true })
		u, _ := newTestUpstream(t, op, nil)
		if err := u.CheckAuthzDetails(context.Background(), client, testDetails); !errors.Is(err, ciba.ErrUnavailable) {
			t.Fatalf("CheckAuthzDetails = %v; want ErrUnavailable", err)
		}
	})
}

// TestAuthCodeURLCarriesDetailsAndResources: the authorization request
// sends the details as authorization_details (RFC 9396 §2) and each
// resource (RFC 8707 §2); the IdP's authorization_details in its token
// response come back in the tokens.
func TestAuthCodeURLCarriesDetailsAndResources(t *testing.T) {
	op := newTestOP(t)
	u, _ := newTestUpstream(t, op, nil)
	l := NewLogin()
	raw, err := u.AuthCodeURL(context.Background(), cibaClient, l, AuthParams{Scopes: []string{"openid"},
		AuthzDetails: testDetails, Resources: []string{"https://a.example/", "https://b.example/"}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	q := got.Query()
	if q.Get("authorization_details") != testDetails {
		t.Errorf("authorization_details = %q; want %q", q.Get("authorization_details"), testDetails)
	}
	if !slices.Equal(q["resource"], []string{"https://a.example/", "https://b.example/"}) || q.Get("state") != l.State {
		t.Errorf("resource = %q, state %q; want both resources and the state kept", q["resource"], q.Get("state"))
	}

	idt := op.idToken(map[string]any{"email": "alice@example.com"})
	op.set(func(op *testOP) {
		op.token = func(w http.ResponseWriter, _ *http.Request) {
			idptest.WriteJSON(w, http.StatusOK, map[string]any{"access_token": "at", "token_type": "Bearer", "id_token": idt,
				"authorization_details": json.RawMessage(testDetails)})
		}
	})
	tr, _, err := u.Exchange(context.Background(), cibaClient, "the-code", testLogin(), Expected{LoginHint: "alice@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	var a, b any
	_ = json.Unmarshal([]byte(tr.AuthorizationDetails), &a)
	_ = json.Unmarshal([]byte(testDetails), &b)
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	if string(x) != string(y) {
		t.Errorf("tokens' authorization_details = %s; want the IdP's %s", tr.AuthorizationDetails, testDetails)
	}
}
