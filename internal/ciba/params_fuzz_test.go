package ciba_test

import (
	"context"
	"testing"
	"unicode/utf8"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// FuzzAuthorize feeds arbitrary parameters to the validation of
// bc-authorize: it never panics, every refusal is a CIBA §13 code, and an
// accepted request has a valid binding message.
func FuzzAuthorize(f *testing.F) {
	f.Add("openid", "alice", "Code 1234", "", "120", "tok")
	f.Add("openid email", "bob", "", "1234", "0", "")
	f.Add("email", "mallory", "a\x00b", "x", "-1", "a b")
	fx := newFixture(f, nil)
	known := map[ciba.ErrorCode]bool{
		ciba.CodeInvalidRequest: true, ciba.CodeInvalidScope: true, ciba.CodeUnknownUserID: true,
		ciba.CodeInvalidBindingMessage: true, ciba.CodeMissingUserCode: true, ciba.CodeInvalidUserCode: true,
	}
	f.Fuzz(func(t *testing.T, scope, hint, msg, code, expiry, tok string) {
		for _, c := range []*ciba.Client{pollClient, pingClient, codeClient} {
			_, err := fx.svc.Authorize(context.Background(), c, ciba.AuthParams{
				Scope: scope, Hint: ciba.Hint{LoginHint: hint}, BindingMessage: msg,
				UserCode: code, RequestedExpiry: expiry, ClientNotificationToken: tok,
			})
			if err != nil {
				if e := ciba.AsError(err); !known[e.Code] {
					t.Fatalf("unexpected code %s: %v", e.Code, err)
				}
				continue
			}
			if msg != "" && (ciba.ValidBindingMessage(msg, 20) != "" || !utf8.ValidString(msg)) {
				t.Fatalf("accepted binding_message %q", msg)
			}
		}
	})
}
