package ciba

import "testing"

// checkDPoP: one row per rule of RFC 9449 §10 as the CIBA grant applies it.
func TestCheckDPoP(t *testing.T) {
	const a, b = "key-a", "key-b"
	for _, tt := range []struct {
		name           string
		bound, present string
		code           ErrorCode // "" when the tokens are handed out
	}{
		{"an unbound request polled without a proof is redeemed", "", "", ""},
		{"a bound request polled with a proof of its key is redeemed", a, a, ""},
		{"a bound request polled without a proof is invalid_grant", a, "", CodeInvalidGrant},
		{"a bound request polled with another key is invalid_grant", a, b, CodeInvalidGrant},
		{"an unbound request polled with a proof is invalid_dpop_proof: its tokens are not bound", "", a, CodeInvalidDPoPProof},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := checkDPoP(&AuthRequest{Kind: KindCIBA, DPoPJKT: tt.bound}, tt.present)
			switch {
			case tt.code == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.code != "" && AsError(err).Code != tt.code:
				t.Fatalf("err = %v, want %s", err, tt.code)
			}
		})
	}
}
