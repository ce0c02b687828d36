package ciba_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// scopeList is "openid" and n-1 distinct other scope values.
func scopeList(n int) string {
	v := []string{"openid"}
	for i := 1; i < n; i++ {
		v = append(v, "s"+strconv.Itoa(i))
	}
	return strings.Join(v, " ")
}

// words is n distinct space-separated values of the form prefixN.
func words(prefix string, n int) string {
	v := make([]string, n)
	for i := range v {
		v[i] = prefix + strconv.Itoa(i)
	}
	return strings.Join(v, " ")
}

// TestRequestBounds checks that every list and string of an authentication
// request over its bound is invalid_request naming the parameter and the
// bound, that nothing is stored, and that a request at every bound passes.
func TestRequestBounds(t *testing.T) {
	t.Parallel()
	long := func(n int) string { return strings.Repeat("a", n) }
	for _, tc := range []struct {
		name   string
		client *ciba.Client
		mod    func(*ciba.AuthParams)
		want   []string // in the description
	}{
		{"too many scope values", pollClient, func(p *ciba.AuthParams) { p.Scope = scopeList(ciba.MaxScopeValues + 1) },
			[]string{"scope", strconv.Itoa(ciba.MaxScopeValues)}},
		{"a repeated scope counts once, but the parameter is bounded", pollClient, func(p *ciba.AuthParams) {
			p.Scope = strings.Repeat("openid ", ciba.MaxScopeLength/7+1)
		}, []string{"scope", strconv.Itoa(ciba.MaxScopeLength)}},
		{"a scope value too long", pollClient, func(p *ciba.AuthParams) { p.Scope = "openid " + long(ciba.MaxScopeValueLength+1) },
			[]string{"scope", strconv.Itoa(ciba.MaxScopeValueLength)}},
		{"too many acr values", pollClient, func(p *ciba.AuthParams) { p.ACRValues = words("urn:acr:", ciba.MaxACRValues+1) },
			[]string{"acr_values", strconv.Itoa(ciba.MaxACRValues)}},
		{"an acr value too long", pollClient, func(p *ciba.AuthParams) { p.ACRValues = long(ciba.MaxACRValueLength + 1) },
			[]string{"acr_values", strconv.Itoa(ciba.MaxACRValueLength)}},
		{"acr_values too long", pollClient, func(p *ciba.AuthParams) { p.ACRValues = strings.Repeat("a ", ciba.MaxACRLength) },
			[]string{"acr_values", strconv.Itoa(ciba.MaxACRLength)}},
		{"login_hint too long", pollClient, func(p *ciba.AuthParams) { p.Hint.LoginHint = long(ciba.MaxLoginHint + 1) },
			[]string{"login_hint", strconv.Itoa(ciba.MaxLoginHint)}},
		{"login_hint with a control character", pollClient, func(p *ciba.AuthParams) { p.Hint.LoginHint = "alice\x00" },
			[]string{"login_hint", "control"}},
		{"login_hint not UTF-8", pollClient, func(p *ciba.AuthParams) { p.Hint.LoginHint = "al\xffice" },
			[]string{"login_hint", "UTF-8"}},
		{"id_token_hint too long", pollClient, func(p *ciba.AuthParams) { p.Hint = ciba.Hint{IDTokenHint: long(ciba.MaxTokenHint + 1)} },
			[]string{"id_token_hint", strconv.Itoa(ciba.MaxTokenHint)}},
		{"login_hint_token too long", pollClient, func(p *ciba.AuthParams) { p.Hint = ciba.Hint{LoginHintToken: long(ciba.MaxTokenHint + 1)} },
			[]string{"login_hint_token", strconv.Itoa(ciba.MaxTokenHint)}},
		{"user_code too long", codeClient, func(p *ciba.AuthParams) { p.UserCode = long(ciba.MaxUserCode + 1) },
			[]string{"user_code", strconv.Itoa(ciba.MaxUserCode)}},
		{"binding_message too many bytes", pollClient, func(p *ciba.AuthParams) { p.BindingMessage = long(ciba.MaxBindingMessageBytes + 1) },
			[]string{"binding_message", strconv.Itoa(ciba.MaxBindingMessageBytes)}},
		{"requested_expiry too long", pollClient, func(p *ciba.AuthParams) { p.RequestedExpiry = strings.Repeat("9", ciba.MaxRequestedExpiry+1) },
			[]string{"requested_expiry", strconv.Itoa(ciba.MaxRequestedExpiry)}},
		{"client_notification_token too long, even for a poll client", pollClient, func(p *ciba.AuthParams) {
			p.ClientNotificationToken = long(ciba.MaxNotificationToken + 1)
		}, []string{"client_notification_token", strconv.Itoa(ciba.MaxNotificationToken)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, nil)
			p := ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: "alice"}, UserCode: "1234"}
			tc.mod(&p)
			_, err := f.svc.Authorize(context.Background(), tc.client, p)
			e := ciba.AsError(err)
			if e.Code != ciba.CodeInvalidRequest {
				t.Fatalf("Authorize = %v, want invalid_request", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(e.Description, w) {
					t.Errorf("error_description %q does not name %q", e.Description, w)
				}
			}
			if n := storedRequests(t, f.store); n != 0 {
				t.Errorf("%d requests stored, want none", n)
			}
		})
	}

	t.Run("a request at every bound is accepted, its lists deduplicated", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, nil)
		scope := scopeList(ciba.MaxScopeValues)
		acr := words("urn:acr:", ciba.MaxACRValues)
		p := ciba.AuthParams{
			// Repeats are not counted twice.
			Scope: scope + " openid s1", ACRValues: acr + " urn:acr:0",
			Hint: ciba.Hint{LoginHint: "alice"}, RequestedExpiry: "120",
		}
		resp, err := f.svc.Authorize(context.Background(), pollClient, p)
		if err != nil {
			t.Fatalf("Authorize at the bounds: %v", err)
		}
		r, err := f.store.GetRequest(context.Background(), resp.AuthReqID)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Scopes) != ciba.MaxScopeValues || len(r.ACRValues) != ciba.MaxACRValues {
			t.Errorf("stored %d scopes and %d acr values, want %d and %d", len(r.Scopes), len(r.ACRValues), ciba.MaxScopeValues, ciba.MaxACRValues)
		}
	})

	t.Run("ParseScope", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			in   string
			want []string
			code ciba.ErrorCode
		}{
			{"openid  email openid", []string{"openid", "email"}, ""},
			{"", nil, ""},
			{scopeList(ciba.MaxScopeValues), strings.Fields(scopeList(ciba.MaxScopeValues)), ""},
			{scopeList(ciba.MaxScopeValues + 1), nil, ciba.CodeInvalidRequest},
			{"openid e\"mail", nil, ciba.CodeInvalidScope},
			{"openid\temail", nil, ciba.CodeInvalidScope},
			{strings.Repeat(" ", ciba.MaxScopeLength+1), nil, ciba.CodeInvalidRequest},
		} {
			got, e := ciba.ParseScope(tc.in)
			var gotCode ciba.ErrorCode
			if e != nil {
				gotCode = e.Code
			}
			if gotCode != tc.code || e == nil && !slices.Equal(got, tc.want) {
				t.Errorf("ParseScope(%.40q) = %q, %v; want %q, %q", tc.in, got, e, tc.want, tc.code)
			}
		}
	})

	t.Run("a device authorization request with too many scopes is refused and stores nothing", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, nil)
		d := newDevice(t, f, nil)
		_, err := d.Authorize(context.Background(), tvClient, scopeList(ciba.MaxScopeValues+1))
		if e := ciba.AsError(err); e.Code != ciba.CodeInvalidRequest || !strings.Contains(e.Description, fmt.Sprint(ciba.MaxScopeValues)) {
			t.Fatalf("device Authorize = %v, want invalid_request naming the bound", err)
		}
		if n := storedRequests(t, f.store); n != 0 {
			t.Errorf("%d requests stored, want none", n)
		}
	})
}

// TestScopePolicy checks the scopes granted to a client without its own
// list: with Config.Scopes (the local issuer) the others are dropped from
// the request, so they never reach its tokens; a client's own list still
// refuses what is not on it; without Config.Scopes (a federating upstream)
// everything requested is passed on.
func TestScopePolicy(t *testing.T) {
	t.Parallel()
	granted := []string{"openid", "profile", "email", "address", "phone", "offline_access", "payments"}
	stored := func(t *testing.T, f *fixture, c *ciba.Client, scope string) ([]string, error) {
		t.Helper()
		resp, err := f.svc.Authorize(context.Background(), c, ciba.AuthParams{Scope: scope, Hint: ciba.Hint{LoginHint: "alice"}})
		if err != nil {
			return nil, err
		}
		r, err := f.store.GetRequest(context.Background(), resp.AuthReqID)
		if err != nil {
			t.Fatal(err)
		}
		return r.Scopes, nil
	}
	t.Run("unknown scopes are dropped for a client without a list", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, func(c *ciba.Config, _ *ciba.Deps) { c.Scopes = granted })
		got, err := stored(t, f, pollClient, "openid admin email payments root")
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"openid", "email", "payments"}; !slices.Equal(got, want) {
			t.Errorf("stored scopes %q, want %q", got, want)
		}
		// Nothing granted besides openid: openid alone is left.
		id := f.create(t, pollClient, func(p *ciba.AuthParams) { p.Scope = "openid admin" })
		r, err := f.store.GetRequest(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(r.Scopes, []string{"openid"}) {
			t.Errorf("stored scopes %q, want only openid", r.Scopes)
		}
	})
	t.Run("a client's own list still refuses what is not on it", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, func(c *ciba.Config, _ *ciba.Deps) { c.Scopes = granted })
		if _, err := stored(t, f, narrow, "openid profile"); code(err) != ciba.CodeInvalidScope {
			t.Errorf("Authorize = %v, want invalid_scope", err)
		}
		listed := &ciba.Client{ID: "listed", Mode: ciba.ModePoll, Scopes: []string{"openid", "admin"}}
		got, err := stored(t, f, listed, "openid admin")
		if err != nil || !slices.Equal(got, []string{"openid", "admin"}) {
			t.Errorf("a listed scope the issuer does not grant by default: %q, %v; want it granted", got, err)
		}
	})
	t.Run("without Config.Scopes every scope is passed on", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, nil)
		got, err := stored(t, f, pollClient, "openid admin")
		if err != nil || !slices.Equal(got, []string{"openid", "admin"}) {
			t.Errorf("stored %q, %v; want openid admin", got, err)
		}
	})
}
