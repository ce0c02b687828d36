package jose

import (
	"strings"
	"testing"

	gojose "github.com/go-jose/go-jose/v4"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// TestUnverifiedHintName checks whom a relayed hint names for the per-user
// limit: the id_token_hint's sub, the login_hint_token's subject
// identifier, whatever key signed them (none is checked), and "" for what
// is not a readable JWS.
func TestUnverifiedHintName(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		h    ciba.Hint
		want string
	}{
		{"id_token_hint sub", ciba.Hint{IDTokenHint: sign(t, rs256(), map[string]any{"iss": "https://op", "sub": "alice"})}, "alice"},
		{"id_token_hint signed by anyone", ciba.Hint{IDTokenHint: sign(t, signer{alg: gojose.HS256, key: []byte(testSecret)}, map[string]any{"sub": "alice"})}, "alice"},
		{"login_hint_token sub", ciba.Hint{LoginHintToken: sign(t, rs256(), map[string]any{"sub": "bob"})}, "bob"},
		{"login_hint_token e-mail sub_id", ciba.Hint{LoginHintToken: sign(t, rs256(), map[string]any{
			"sub_id": map[string]any{"format": "email", "email": "Carol@Example.com"}})}, "Carol@Example.com"},
		{"login_hint_token phone sub_id", ciba.Hint{LoginHintToken: sign(t, rs256(), map[string]any{
			"sub_id": map[string]any{"format": "phone_number", "phone_number": "+15550100"}})}, "+15550100"},
		{"unsigned (alg none) is not read: the relay keys it by the whole token", ciba.Hint{IDTokenHint: unsigned(t, map[string]any{"sub": "alice"})}, ""},
		{"not a JWS", ciba.Hint{LoginHintToken: "opaque-token"}, ""},
		{"too large", ciba.Hint{IDTokenHint: strings.Repeat("a", DefaultMaxSize+1)}, ""},
		{"no hint", ciba.Hint{}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := UnverifiedHintName(tc.h); got != tc.want {
				t.Errorf("UnverifiedHintName = %q, want %q", got, tc.want)
			}
		})
	}
}
