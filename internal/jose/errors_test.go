package jose

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// failingReplay is a Replay whose record cannot be made.
type failingReplay struct{ err error }

func (r failingReplay) Seen(context.Context, string, time.Time) error { return r.err }

// TestValidationErrorKinds checks the faults a caller maps to protocol
// errors: a replay check that fails keeps its cause for the caller, and a
// policy that cannot be applied is told from a bad token.
func TestValidationErrorKinds(t *testing.T) {
	down := errors.New("store down")
	t.Run("a replay check that fails is ErrReplayCheck and wraps its cause", func(t *testing.T) {
		p := requestPolicy(t)
		p.Replay = failingReplay{err: down}
		_, err := VerifyRequestObject(t.Context(), sign(t, rs256(), requestClaims()), p)
		wantError(t, err, ErrReplayCheck, "request object: ")
		if !errors.Is(err, down) || errors.Is(err, ErrReplay) || errors.Is(err, ErrInvalid) {
			t.Fatalf("err = %v: want the cause kept, and no other kind", err)
		}
	})
	t.Run("a policy without Replay is ErrPolicy", func(t *testing.T) {
		p := assertionPolicy(t)
		p.Replay = nil
		err := VerifyClientAssertion(t.Context(), sign(t, rs256(), assertionClaims()), p)
		wantError(t, err, ErrPolicy, "client assertion: policy: ")
	})
	t.Run("the field and the description name the claim", func(t *testing.T) {
		c := requestClaims()
		delete(c, "jti")
		_, err := VerifyRequestObject(t.Context(), sign(t, rs256(), c), requestPolicy(t))
		var e *ValidationError
		if !errors.As(err, &e) || e.Field != "jti" || e.Token != TokenRequestObject || e.Description() != "request object: jti is missing" {
			t.Fatalf("err = %#v", err)
		}
		if !strings.HasPrefix(e.Error(), "jose: request object: jti is missing") {
			t.Fatalf("Error() = %q", e.Error())
		}
	})
}
