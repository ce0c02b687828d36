package jose

import (
	"strings"
	"testing"

	gojose "github.com/go-jose/go-jose/v4"
)

// TestUnverifiedHintName checks whom a relayed hint names for the per-user
// limit: the id_token_hint's sub, the login_hint_token's subject
// identifier, whatever key signed them (none is checked), and "" for what
// is not a readable JWS.
func TestUnverifiedHintName(t *testing.T) {
	type hint struct{ IDTokenHint, LoginHintToken string }
	t.Parallel()
	for _, tc := range []struct {
		name string
		h    hint
		want string
	}{
		{"id_token_hint sub", hint{IDTokenHint: sign(t, rs256(), map[string]any{"iss": "https://op", "sub": "alice"})}, "alice"},
		{"id_token_hint signed by anyone", hint{IDTokenHint: sign(t, signer{alg: gojose.HS256, key: []byte(testSecret)}, map[string]any{"sub": "alice"})}, "alice"},
		{"login_hint_token sub", hint{LoginHintToken: sign(t, rs256(), map[string]any{"sub": "bob"})}, "bob"},
		{"login_hint_token e-mail sub_id", hint{LoginHintToken: sign(t, rs256(), map[string]any{
			"sub_id": map[string]any{"format": "email", "email": "Carol@Example.com"}})}, "Carol@Example.com"},
		{"login_hint_token phone sub_id", hint{LoginHintToken: sign(t, rs256(), map[string]any{
			"sub_id": map[string]any{"format": "phone_number", "phone_number": "+15550100"}})}, "+15550100"},
		{"unsigned (alg none) is not read: the relay keys it by the whole token", hint{IDTokenHint: unsigned(t, map[string]any{"sub": "alice"})}, ""},
		{"not a JWS", hint{LoginHintToken: "opaque-token"}, ""},
		{"too large", hint{IDTokenHint: strings.Repeat("a", DefaultMaxSize+1)}, ""},
		{"no hint", hint{}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := UnverifiedHintName(tc.h.IDTokenHint, tc.h.LoginHintToken); got != tc.want {
				t.Errorf("UnverifiedHintName = %q, want %q", got, tc.want)
			}
		})
	}
}
