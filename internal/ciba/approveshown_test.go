package ciba_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/authzdetails"
	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/validate"
)

// detailsMinter mints tokens that carry the request's details, as the
// local issuer does, or other details when swap is set.
type detailsMinter struct{ swap string }

func (m detailsMinter) Mint(_ context.Context, r *ciba.AuthRequest, _ time.Time) (*ciba.TokenResponse, error) {
	d := r.AuthzDetails
	if m.swap != "" {
		d = m.swap
	}
	return &ciba.TokenResponse{AccessToken: "at-" + r.ID, TokenType: "Bearer", AuthorizationDetails: ciba.RawJSON(d)}, nil
}

// agentClient is a delegate (acts_for_user) that may send details.
var agentClient = &ciba.Client{ID: "agent", Mode: ciba.ModePoll, ActsForUser: true, AuthzDetailsTypes: []string{"payment_initiation"}}

const shownPayment = `[{"type":"payment_initiation","instructedAmount":{"currency":"EUR","amount":"50.00"}}]`

func shownFixture(t *testing.T, m ciba.Minter) *fixture {
	t.Helper()
	r, err := authzdetails.Compile(authzdetails.Schemas{"payment_initiation": []byte(paySchema)}, authzdetails.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return newFixture(t, func(c *ciba.Config, d *ciba.Deps) {
		c.AuthzDetails, d.Minter = authzdetails.NewLive(authzdetails.Set{Registry: r}), m
	})
}

// TestApproveShown: "what the user approved is recorded with the
// decision, and the token carries exactly that list".
func TestApproveShown(t *testing.T) {
	ctx := context.Background()
	get := func(t *testing.T, f *fixture, id string) *ciba.AuthRequest {
		t.Helper()
		r, err := f.store.GetRequest(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	t.Run("a delegate's request records it as the actor", func(t *testing.T) {
		f := shownFixture(t, detailsMinter{})
		if r := get(t, f, f.create(t, agentClient)); r.Actor != "agent" {
			t.Errorf("Actor = %q, want agent", r.Actor)
		}
		if r := get(t, f, f.create(t, payClient)); r.Actor != "" {
			t.Errorf("an ordinary client's request has Actor %q", r.Actor)
		}
	})
	t.Run("the digest shown is recorded with the approval", func(t *testing.T) {
		f := shownFixture(t, detailsMinter{})
		r := get(t, f, f.create(t, agentClient, func(p *ciba.AuthParams) { p.AuthorizationDetails = shownPayment }))
		if err := f.svc.ApproveShown(ctx, r, r.DetailsDigest()); err != nil {
			t.Fatal(err)
		}
		if got := get(t, f, r.ID); got.Status != ciba.StatusApproved || got.ApprovedDetails != r.DetailsDigest() || got.ApprovedDetails == "" {
			t.Errorf("after approval: %s, approved %q; want approved, %q", got.Status, got.ApprovedDetails, r.DetailsDigest())
		}
	})
	t.Run("another digest approves nothing", func(t *testing.T) {
		f := shownFixture(t, detailsMinter{})
		r := get(t, f, f.create(t, agentClient, func(p *ciba.AuthParams) { p.AuthorizationDetails = shownPayment }))
		for _, d := range []string{"", authzdetails.DigestOf([]byte(`[]`))} {
			err := f.svc.ApproveShown(ctx, r, d)
			if !errors.Is(err, ciba.ErrDetailsChanged) || ciba.AsError(err).Code != ciba.CodeInvalidRequest {
				t.Errorf("ApproveShown(%q) = %v; want invalid_request wrapping ErrDetailsChanged", d, err)
			}
		}
		if got := get(t, f, r.ID); got.Status != ciba.StatusPending {
			t.Errorf("status %s, want pending", got.Status)
		}
	})
	t.Run("tokens that carry another list are not stored", func(t *testing.T) {
		f := shownFixture(t, detailsMinter{swap: `[{"type":"payment_initiation","instructedAmount":{"currency":"EUR","amount":"5000.00"}}]`})
		r := get(t, f, f.create(t, agentClient, func(p *ciba.AuthParams) { p.AuthorizationDetails = shownPayment }))
		if err := f.svc.ApproveShown(ctx, r, r.DetailsDigest()); ciba.AsError(err).Code != ciba.CodeServerError {
			t.Errorf("ApproveShown = %v; want server_error", err)
		}
		if got := get(t, f, r.ID); got.Status != ciba.StatusPending || len(got.Result) > 0 {
			t.Errorf("status %s with %d bytes of tokens; want pending without", got.Status, len(got.Result))
		}
	})
	t.Run("the webhook callback checks the digest it names, and records the request's when it names none", func(t *testing.T) {
		f := shownFixture(t, detailsMinter{})
		r := get(t, f, f.create(t, agentClient, func(p *ciba.AuthParams) { p.AuthorizationDetails = shownPayment }))
		tok := f.svc.CallbackToken(r.ApprovalID)
		if err := f.svc.Callback(ctx, tok, true, "", authzdetails.DigestOf([]byte(`[]`))); !errors.Is(err, ciba.ErrDetailsChanged) {
			t.Errorf("Callback with another digest = %v", err)
		}
		if err := f.svc.Callback(ctx, tok, true, "", ""); err != nil {
			t.Fatal(err)
		}
		if got := get(t, f, r.ID); got.ApprovedDetails != r.DetailsDigest() {
			t.Errorf("approved %q, want %q", got.ApprovedDetails, r.DetailsDigest())
		}
	})
}

// TestValidationHookSeesTheDetails: the validation hook is told the
// checked authorization_details and that the client acts for the user, so
// that a policy can refuse an amount.
func TestValidationHookSeesTheDetails(t *testing.T) {
	hook := newPolicyHook(t, func(m validate.Message) (int, string) {
		if strings.Contains(string(m.AuthorizationDetails), `"amount":"5000.00"`) {
			return 200, `{"allow":false,"reason":"too much"}`
		}
		return 200, `{"allow":true}`
	})
	r, err := authzdetails.Compile(authzdetails.Schemas{"payment_initiation": []byte(paySchema)}, authzdetails.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(c *ciba.Config, d *ciba.Deps) {
		c.AuthzDetails, d.Validator = authzdetails.NewLive(authzdetails.Set{Registry: r}), hook.hook
	})
	ctx := context.Background()
	if _, err := f.svc.Authorize(ctx, agentClient, ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: "alice"}, AuthorizationDetails: shownPayment}); err != nil {
		t.Fatal(err)
	}
	big := strings.Replace(shownPayment, "50.00", "5000.00", 1)
	if _, err := f.svc.Authorize(ctx, agentClient, ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: "alice"}, AuthorizationDetails: big}); ciba.AsError(err).Code != ciba.CodeAccessDenied {
		t.Errorf("a payment the policy refuses: %v, want access_denied", err)
	}
	seen := hook.seen()
	if len(seen) != 2 || !seen[0].ActsForUser {
		t.Fatalf("calls %+v", seen)
	}
	if want := `[{"instructedAmount":{"amount":"50.00","currency":"EUR"},"type":"payment_initiation"}]`; string(seen[0].AuthorizationDetails) != want {
		t.Errorf("the hook was told %s, want %s", seen[0].AuthorizationDetails, want)
	}
}
