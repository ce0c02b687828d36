package dpop

import (
	"context"
	"errors"
	"testing"
)

// FuzzVerify: whatever the DPoP header holds, Verify does not panic, fails
// with an *Error, and a proof it accepts is accepted once. The seed corpus
// (testdata/fuzz/FuzzVerify) holds valid proofs made for testNow and
// testURL, and near misses; f.Add adds fresh ones.
func FuzzVerify(f *testing.F) {
	f.Add(proof{claims: goodClaims("seed")}.sign(f))
	f.Add(unsigned(f, goodClaims("none")))
	f.Add("eyJhbGciOiJFUzI1NiJ9.e30.")
	f.Fuzz(func(t *testing.T, raw string) {
		v := newTestVerifier(t, Config{})
		req := Request{Method: "POST", URL: testURL}
		p, err := v.Verify(context.Background(), raw, req)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Kind == nil {
				t.Fatalf("err %T %v is not an *Error with a Kind", err, err)
			}
			return
		}
		if len(p.JKT) != 43 || p.JTI == "" {
			t.Fatalf("accepted proof %+v", p)
		}
		if _, err := v.Verify(context.Background(), raw, req); !errors.Is(err, ErrReplay) {
			t.Fatalf("accepted twice: %v", err)
		}
	})
}
