package clientmeta

import (
	"slices"
	"strings"
	"testing"
)

// TestAuthzDetailsTypes checks the rules of authorization_details_types:
// each a valid type name, once, supported by the server; none for a public
// client.
func TestAuthzDetailsTypes(t *testing.T) {
	server := []string{"payment_initiation", "https://bank.example/accounts"}
	ok := secretClient()
	ok.AuthzDetailsTypes = []string{"payment_initiation", "https://bank.example/accounts"}
	ok.ServerAuthzDetailsTypes = server
	v, ps := Check(ok)
	if len(ps) > 0 {
		t.Fatalf("Check: %v", ps)
	}
	got := v.AuthzDetailsTypes()
	if !slices.Equal(got, ok.AuthzDetailsTypes) {
		t.Fatalf("AuthzDetailsTypes = %v", got)
	}
	got[0] = "changed"
	if v.AuthzDetailsTypes()[0] != "payment_initiation" || v.Metadata().AuthzDetailsTypes[0] != "payment_initiation" {
		t.Error("Valid shares its list")
	}

	for _, tc := range []struct {
		name  string
		m     func() Metadata
		types []string
		field string
		msg   string
	}{
		{"not supported", secretClient, []string{"other"}, "authorization_details_types[0]", `type "other" is not one of authorization_details.types`},
		{"twice", secretClient, []string{"payment_initiation", "payment_initiation"}, "authorization_details_types[1]", "listed twice"},
		{"empty", secretClient, []string{""}, "authorization_details_types[0]", "1 to 200 characters"},
		{"space", secretClient, []string{"a b"}, "authorization_details_types[0]", "without spaces"},
		{"quote", secretClient, []string{`a"b`}, "authorization_details_types[0]", "without spaces, quotes"},
		{"too long", secretClient, []string{strings.Repeat("t", 201)}, "authorization_details_types[0]", "1 to 200 characters"},
		{"public client", publicClient, []string{"payment_initiation"}, "authorization_details_types", "public client"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := tc.m()
			m.AuthzDetailsTypes = tc.types
			m.ServerAuthzDetailsTypes = server
			_, ps := Check(m)
			for _, p := range ps {
				if p.Field == tc.field && strings.Contains(p.Message, tc.msg) {
					return
				}
			}
			t.Errorf("no problem at %s saying %q; got %v", tc.field, tc.msg, ps)
		})
	}
}
