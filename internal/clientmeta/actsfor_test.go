package clientmeta

import (
	"strings"
	"testing"
)

// TestActsForUser checks the rules of acts_for_user: a confidential client
// of a server whose issuer can name it is a delegate; a public client, or
// a server whose tokens come from the identity provider, is refused.
func TestActsForUser(t *testing.T) {
	ok := secretClient()
	ok.ActsForUser, ok.ServerActsForUser = true, true
	v, ps := Check(ok)
	if len(ps) > 0 {
		t.Fatalf("Check: %v", ps)
	}
	if !v.Metadata().ActsForUser {
		t.Fatal("ActsForUser lost")
	}
	for _, tc := range []struct {
		name   string
		m      func() Metadata
		server bool
		msg    string
	}{
		{"a public client does not authenticate, so it cannot be named as the actor", publicClient, true, "public client"},
		{"an upstream that issues the tokens cannot name the actor", secretClient, false, "local upstream only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := tc.m()
			m.ActsForUser, m.ServerActsForUser = true, tc.server
			_, ps := Check(m)
			for _, p := range ps {
				if p.Field == "acts_for_user" && strings.Contains(p.Message, tc.msg) {
					return
				}
			}
			t.Errorf("no problem at acts_for_user saying %q; got %v", tc.msg, ps)
		})
	}
}
