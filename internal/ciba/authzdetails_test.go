package ciba_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/cibaproxy/cibaproxy/internal/authzdetails"
	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// payClient may send payment_initiation details.
var payClient = &ciba.Client{ID: "pay", Mode: ciba.ModePoll, AuthzDetailsTypes: []string{"payment_initiation"}}

const paySchema = `{"type":"object","required":["type","instructedAmount"],"properties":{
 "instructedAmount":{"type":"object","required":["currency","amount"],
  "properties":{"currency":{"type":"string","pattern":"^[A-Z]{3}$"},"amount":{"type":"string"}}}}}`

func authzFixture(t *testing.T) *fixture {
	t.Helper()
	r := authzRegistry(t)
	return newFixture(t, func(c *ciba.Config, _ *ciba.Deps) {
		c.AuthzDetails = authzdetails.NewLive(authzdetails.Set{Registry: r})
	})
}

// authzRegistry accepts payment_initiation (paySchema) and
// account_information details.
func authzRegistry(t *testing.T) *authzdetails.Registry {
	t.Helper()
	r, err := authzdetails.Compile(authzdetails.Schemas{
		"payment_initiation":  []byte(paySchema),
		"account_information": []byte(`{}`),
	}, authzdetails.Limits{MaxBytes: 1024, MaxCount: 2})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestAuthorizationDetailsStored: accepted details are stored on the
// request in canonical form, whichever way they were sent.
func TestAuthorizationDetailsStored(t *testing.T) {
	f := authzFixture(t)
	want := `[{"instructedAmount":{"amount":"50.00","currency":"EUR"},"type":"payment_initiation"}]`
	for name, value := range map[string]string{
		"array":       `[{"type":"payment_initiation","instructedAmount":{"currency":"EUR","amount":"50.00"}}]`,
		"json string": `"[{\"type\":\"payment_initiation\",\"instructedAmount\":{\"currency\":\"EUR\",\"amount\":\"50.00\"}}]"`,
	} {
		t.Run(name, func(t *testing.T) {
			id := f.create(t, payClient, func(p *ciba.AuthParams) { p.AuthorizationDetails = value })
			r, err := f.store.GetRequest(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			if r.AuthzDetails != want {
				t.Errorf("stored %s, want %s", r.AuthzDetails, want)
			}
		})
	}
	t.Run("none", func(t *testing.T) {
		id := f.create(t, payClient)
		r, _ := f.store.GetRequest(context.Background(), id)
		if r.AuthzDetails != "" {
			t.Errorf("stored %q without details", r.AuthzDetails)
		}
	})
}

// TestAuthorizationDetailsRefused: every refusal is
// invalid_authorization_details naming the element and field, and nothing
// is stored.
func TestAuthorizationDetailsRefused(t *testing.T) {
	pay := `{"type":"payment_initiation","instructedAmount":{"currency":"EUR","amount":"1"}}`
	for _, tc := range []struct {
		name, value string
		client      *ciba.Client
		noRegistry  bool
		desc        string
	}{
		{"client without types", `[` + pay + `]`, pollClient, false, `client "poll"`},
		{"server without types", `[` + pay + `]`, payClient, true, "may send no authorization_details types"},
		{"not json", `[{`, payClient, false, "authorization_details is not valid JSON"},
		{"too long", `[` + pay + strings.Repeat(" ", 1024) + `]`, payClient, false, "at most 1024 are allowed"},
		{"too many", `[` + pay + `,` + pay + `,` + pay + `]`, payClient, false, "has 3 elements; at most 2"},
		{"no type", `[{"actions":["x"]}]`, payClient, false, "authorization_details[0].type is missing"},
		{"type of another client", `[` + pay + `,{"type":"account_information"}]`, payClient, false, "authorization_details[1].type 'account_information' is not allowed for this client"},
		{"schema", `[{"type":"payment_initiation","instructedAmount":{"currency":"eur","amount":"1"}}]`, payClient, false, "authorization_details[0].instructedAmount/currency does not match the pattern"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := authzFixture(t)
			if tc.noRegistry {
				f = newFixture(t, nil)
			}
			_, err := f.svc.Authorize(context.Background(), tc.client, ciba.AuthParams{
				Scope: "openid", Hint: ciba.Hint{LoginHint: "alice"}, AuthorizationDetails: tc.value})
			e := ciba.AsError(err)
			if err == nil || e.Code != ciba.CodeInvalidAuthorizationDetails || e.HTTPStatus() != 400 {
				t.Fatalf("error = %v, want invalid_authorization_details", err)
			}
			if !strings.Contains(e.Description, tc.desc) {
				t.Errorf("description %q, want it to contain %q", e.Description, tc.desc)
			}
			n := 0
			f.store.ListRequests(context.Background(), func(*ciba.AuthRequest) bool { n++; return true })
			if n != 0 {
				t.Errorf("a refused request was stored")
			}
		})
	}
}

// TestTokenResponseAuthorizationDetails: the token response writes its
// authorization_details as they are and leaves the member out when none.
func TestTokenResponseAuthorizationDetails(t *testing.T) {
	tr := ciba.TokenResponse{AccessToken: "a", TokenType: "Bearer", AuthorizationDetails: `[{"n":1.50,"type":"t"}]`}
	b, err := json.Marshal(tr)
	if err != nil || string(b) != `{"access_token":"a","token_type":"Bearer","authorization_details":[{"n":1.50,"type":"t"}]}` {
		t.Fatalf("%s %v", b, err)
	}
	var back ciba.TokenResponse
	if err := json.Unmarshal(b, &back); err != nil || back != tr {
		t.Fatalf("round trip: %+v %v", back, err)
	}
	if b, _ := json.Marshal(ciba.TokenResponse{AccessToken: "a"}); strings.Contains(string(b), "authorization_details") {
		t.Errorf("empty details written: %s", b)
	}
	if err := json.Unmarshal([]byte(`{"authorization_details":[}`), &back); err == nil {
		t.Error("invalid JSON accepted")
	}
	var raw ciba.RawJSON
	if err := raw.UnmarshalJSON([]byte("{")); err == nil {
		t.Error("RawJSON took invalid JSON")
	}
	if b, _ := ciba.RawJSON("").MarshalJSON(); string(b) != "null" {
		t.Errorf("empty RawJSON = %s", b)
	}
}
