package local_test

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/keys"
)

// failingSigner is a keys.Manager whose Sign fails for tokens of type
// failTyp while fail is set.
type failingSigner struct {
	*keys.Manager
	failTyp string
	fail    atomic.Bool
}

func (s *failingSigner) Sign(claims any, typ string) (string, error) {
	if s.fail.Load() && typ == s.failTyp {
		return "", errors.New("signing key unavailable")
	}
	return s.Manager.Sign(claims, typ)
}

// TestRefreshIssueFailureKeepsTheToken: when the new tokens of a refresh
// cannot be issued, the refresh token is unmarked (Refresh: "Nothing was
// issued: unmark the token, so that the client's retry is not taken for a
// reuse"): the client's retry with the same refresh token succeeds, and
// neither it nor its family is revoked. The access token failing (before
// the new refresh token is stored) and the ID token failing (after it) are
// both covered, on every store backend.
func TestRefreshIssueFailureKeepsTheToken(t *testing.T) {
	for _, b := range stores {
		for _, typ := range []string{"at+jwt", "JWT"} {
			t.Run(b.name+"/"+typ, func(t *testing.T) {
				signer := &failingSigner{Manager: newSigner(t), failTyp: typ}
				u := aliceIssuer(t, signer, b.open(t))
				ctx, now := t.Context(), time.Now()
				first := mintAlice(t, u, now)

				signer.fail.Store(true)
				if tr, err := u.Refresh(ctx, "c1", first.RefreshToken, "", "", now); err == nil {
					t.Fatalf("refresh with a failing signer: %+v, want an error", tr)
				}
				signer.fail.Store(false)

				// The retry is not a reuse: it gets new tokens.
				second, err := u.Refresh(ctx, "c1", first.RefreshToken, "", "", now)
				if err != nil {
					t.Fatalf("the retry after a failed issue: %v, want new tokens", err)
				}
				if second.AccessToken == "" || second.IDToken == "" || second.RefreshToken == "" || second.RefreshToken == first.RefreshToken {
					t.Fatalf("the retry's tokens: %+v", second)
				}
				// The family lives on: the new refresh token works, and the
				// old one, now used for real, is burnt.
				third, err := u.Refresh(ctx, "c1", second.RefreshToken, "", "", now)
				if err != nil {
					t.Fatalf("the family's next refresh token: %v", err)
				}
				_, err = u.Refresh(ctx, "c1", first.RefreshToken, "", "", now)
				wantInvalidGrant(t, "the first refresh token once used", err)
				_, err = u.Refresh(ctx, "c1", third.RefreshToken, "", "", now)
				wantInvalidGrant(t, "the family's token after a real reuse", err)
			})
		}
	}
}
