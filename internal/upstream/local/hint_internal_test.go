package local

import "testing"

// TestSearchOrder: the hinted kind is looked up first, then the other
// (RFC 7662 §2.1, RFC 7009 §2.1); no hint or an unknown one starts with
// access tokens. A token is looked up only as a kind whose shape can hold
// it, so a wrong hint falls through to the token's own kind.
func TestSearchOrder(t *testing.T) {
	const jwt, opaque = "h.p.s", "c29tZS1yYW5kb20tYnl0ZXM"
	for _, tc := range []struct {
		hint        string
		first       tokenKind
		jwt, opaque tokenKind
	}{
		{"", kindAccess, kindAccess, kindRefresh},
		{HintAccessToken, kindAccess, kindAccess, kindRefresh},
		{HintRefreshToken, kindRefresh, kindAccess, kindRefresh},
		{"id_token", kindAccess, kindAccess, kindRefresh},
	} {
		order := searchOrder(tc.hint)
		if order[0] != tc.first || order[1] == order[0] {
			t.Errorf("hint %q: order %v, want %v first, then the other", tc.hint, order, tc.first)
		}
		if k := kindOf(jwt, tc.hint); k != tc.jwt {
			t.Errorf("hint %q: a JWT is looked up as kind %v, want %v", tc.hint, k, tc.jwt)
		}
		if k := kindOf(opaque, tc.hint); k != tc.opaque {
			t.Errorf("hint %q: an opaque token is looked up as kind %v, want %v", tc.hint, k, tc.opaque)
		}
	}
}
