package webhook

import (
	"strings"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/authzdetails"
	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// TestMessageCarriesTheDetails: the body carries the details as stored,
// their digest, that the client acts for the user, and a text saying so
// with every member readable; a plain request has none of them but the
// text.
func TestMessageCarriesTheDetails(t *testing.T) {
	const details = `[{"creditorName":"ACME","instructedAmount":{"amount":"50.00","currency":"EUR"},"type":"payment_initiation"}]`
	msg := sent(t, &ciba.AuthRequest{
		ID: "auth-req-id", ApprovalID: "appr-1", ClientID: "agent", LoginHint: "alice", Scopes: []string{"openid"},
		ExpiresAt: time.Unix(1_800_000_000, 0), Actor: "agent", AuthzDetails: details,
	}, ciba.Notice{CallbackToken: "cb"})
	if msg["acts_for_user"] != true || msg["authorization_details_digest"] != authzdetails.DigestOf([]byte(details)) {
		t.Errorf("acts_for_user %v, digest %v", msg["acts_for_user"], msg["authorization_details_digest"])
	}
	if l, ok := msg["authorization_details"].([]any); !ok || len(l) != 1 {
		t.Errorf("authorization_details %v", msg["authorization_details"])
	}
	text, _ := msg["text"].(string)
	for _, want := range []string{"Bank acting on your behalf asks to do what is listed below.", "instructedAmount: 50.00 EUR", "creditorName: ACME"} {
		if !strings.Contains(text, want) {
			t.Errorf("text %q lacks %q", text, want)
		}
	}
	plain := sent(t, &ciba.AuthRequest{ID: "auth-req-id", ApprovalID: "appr-1", ClientID: "c1", LoginHint: "alice", Scopes: []string{"openid"}, ExpiresAt: time.Unix(1_800_000_000, 0)}, ciba.Notice{CallbackToken: "cb"})
	for _, k := range []string{"acts_for_user", "authorization_details", "authorization_details_digest"} {
		if _, ok := plain[k]; ok {
			t.Errorf("a plain request's message has %s", k)
		}
	}
	if plain["text"] != "Bank asks you to sign in.\n" {
		t.Errorf("plain text %q", plain["text"])
	}
}
