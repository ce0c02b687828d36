package ciba_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/cibaproxy/cibaproxy/internal/authzdetails"
	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

const testIssuer = "https://ciba.example.com"

func issuerFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixture(t, func(c *ciba.Config, _ *ciba.Deps) {
		c.Issuer = testIssuer
		c.LoginHintIssuers = []string{"https://tenant.idp.example/"}
	})
}

// TestIssSubLoginHint: a JSON login_hint in the iss_sub format names the
// user by sub when iss is the issuer (trailing slash or not) or a trusted
// one; any other JSON hint is invalid_request saying why.
func TestIssSubLoginHint(t *testing.T) {
	f := issuerFixture(t)
	for _, iss := range []string{testIssuer, testIssuer + "/", "https://tenant.idp.example", "https://tenant.idp.example/"} {
		t.Run("accepted "+iss, func(t *testing.T) {
			id := f.create(t, pollClient, func(p *ciba.AuthParams) {
				p.Hint.LoginHint = `{"format":"iss_sub","iss":"` + iss + `","sub":"alice"}`
			})
			r, err := f.store.GetRequest(context.Background(), id)
			if err != nil || r.Subject != "sub-alice" || r.LoginHint != "alice" {
				t.Fatalf("request = %+v, %v; want alice's", r, err)
			}
		})
	}
	for _, tc := range []struct{ name, hint, desc string }{
		{"untrusted issuer", `{"format":"iss_sub","iss":"https://evil.example/","sub":"alice"}`, "neither this server's issuer"},
		{"another format", `{"format":"email","iss":"` + testIssuer + `","sub":"alice"}`, `format "email"`},
		{"no sub", `{"format":"iss_sub","iss":"` + testIssuer + `"}`, "has no sub"},
		{"unknown member", `{"format":"iss_sub","iss":"` + testIssuer + `","sub":"alice","x":1}`, "is JSON but not"},
		{"not JSON", `{alice`, "is JSON but not"},
		{"number sub", `{"format":"iss_sub","iss":"` + testIssuer + `","sub":7}`, "is JSON but not"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.svc.Authorize(context.Background(), pollClient, ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: tc.hint}})
			e := ciba.AsError(err)
			if err == nil || e.Code != ciba.CodeInvalidRequest || !strings.Contains(e.Description, tc.desc) {
				t.Fatalf("error = %v; want invalid_request containing %q", err, tc.desc)
			}
		})
	}
}

// resClient may ask for two resources and one audience.
var resClient = &ciba.Client{ID: "res", Mode: ciba.ModePoll, Resources: []string{"https://api.example/", "https://pay.example/v1", "my-api"}}

// TestResourcesAndAudience: resource (RFC 8707) and audience values on the
// client's list are stored without repeats (they become the access
// token's aud); an empty audience is none.
func TestResourcesAndAudience(t *testing.T) {
	f := newFixture(t, nil)
	for _, tc := range []struct {
		name      string
		resources []string
		audience  string
		want      []string
	}{
		{"none", nil, "", nil},
		{"empty audience", nil, "", nil},
		{"one resource", []string{"https://api.example/"}, "", []string{"https://api.example/"}},
		{"repeated", []string{"https://api.example/", "https://pay.example/v1", "https://api.example/"}, "", []string{"https://api.example/", "https://pay.example/v1"}},
		{"audience", nil, "my-api", []string{"my-api"}},
		{"both", []string{"https://pay.example/v1"}, "my-api", []string{"https://pay.example/v1", "my-api"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := f.create(t, resClient, func(p *ciba.AuthParams) { p.Resources, p.Audience = tc.resources, tc.audience })
			r, err := f.store.GetRequest(context.Background(), id)
			if err != nil || !slices.Equal(r.Resources, tc.want) {
				t.Fatalf("stored resources %q (%v); want %q", r.Resources, err, tc.want)
			}
		})
	}
}

// TestInvalidTarget: each refusal of a resource or audience is
// invalid_target (RFC 8707 §2) saying which value and why; nothing is
// stored.
func TestInvalidTarget(t *testing.T) {
	many := make([]string, ciba.MaxResources+1)
	for i := range many {
		many[i] = "https://api.example/"
	}
	for _, tc := range []struct {
		name      string
		client    *ciba.Client
		resources []string
		audience  string
		code      ciba.ErrorCode
		desc      string
	}{
		{"client without a list", pollClient, []string{"https://api.example/"}, "", ciba.CodeInvalidTarget, "its resources list is empty"},
		{"audience without a list", pollClient, nil, "my-api", ciba.CodeInvalidTarget, "may ask for no audience"},
		{"not on the list", resClient, []string{"https://other.example/"}, "", ciba.CodeInvalidTarget, `resource "https://other.example/" is not one`},
		{"audience not on the list", resClient, nil, "other-api", ciba.CodeInvalidTarget, `audience "other-api" is not one`},
		{"relative", resClient, []string{"/api"}, "", ciba.CodeInvalidTarget, "is not an absolute URI"},
		{"fragment", resClient, []string{"https://api.example/#x"}, "", ciba.CodeInvalidTarget, "has a fragment"},
		{"not a URI", resClient, []string{"my-api"}, "", ciba.CodeInvalidTarget, "is not an absolute URI"},
		{"empty resource", resClient, []string{""}, "", ciba.CodeInvalidTarget, "is empty"},
		{"too long", resClient, []string{"https://api.example/" + strings.Repeat("a", ciba.MaxResourceLength)}, "", ciba.CodeInvalidTarget, "at most 2048"},
		{"too many resources: the set of targets is refused (RFC 8707 §2)", resClient, many, "", ciba.CodeInvalidTarget, "11 resource and audience values; at most 10"},
		{"too many with the audience", resClient, many[:ciba.MaxResources], "my-api", ciba.CodeInvalidTarget, "11 resource and audience values; at most 10"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, nil)
			_, err := f.svc.Authorize(context.Background(), tc.client, ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: "alice"},
				Resources: tc.resources, Audience: tc.audience})
			e := ciba.AsError(err)
			if err == nil || e.Code != tc.code || e.HTTPStatus() != 400 || !strings.Contains(e.Description, tc.desc) {
				t.Fatalf("error = %v; want %s containing %q", err, tc.code, tc.desc)
			}
			n := 0
			f.store.ListRequests(context.Background(), func(*ciba.AuthRequest) bool { n++; return true })
			if n != 0 {
				t.Errorf("a refused request was stored")
			}
		})
	}
}

// checkingUpstream refuses every authorization_details, as the oidc
// upstream does for a type its provider does not list.
type checkingUpstream struct{ upstream }

func (checkingUpstream) CheckAuthzDetails(context.Context, *ciba.Client, string) error {
	return ciba.Errorf(ciba.CodeInvalidAuthorizationDetails, "the provider does not take them")
}

// TestUpstreamRefusesDetails: an upstream that is a DetailsChecker is
// asked at bc-authorize, and its refusal is the answer; nothing is stored.
func TestUpstreamRefusesDetails(t *testing.T) {
	f := newFixture(t, func(c *ciba.Config, d *ciba.Deps) {
		c.AuthzDetails = authzdetails.NewLive(authzdetails.Set{Registry: authzRegistry(t)})
		d.Upstream = checkingUpstream{}
	})
	_, err := f.svc.Authorize(context.Background(), payClient, ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: "alice"},
		AuthorizationDetails: `[{"type":"payment_initiation","instructedAmount":{"currency":"EUR","amount":"1"}}]`})
	if e := ciba.AsError(err); err == nil || e.Code != ciba.CodeInvalidAuthorizationDetails || e.Description != "the provider does not take them" {
		t.Fatalf("error = %v; want the upstream's refusal", err)
	}
	// Without details the upstream is not asked.
	f.create(t, payClient)
}
