package ciba_test

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/authzdetails"
	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/validate"
)

// tvAgent is a delegate device client that may send payment_initiation
// details and ask for one resource.
var tvAgent = &ciba.Client{ID: "tv-agent", ActsForUser: true, AuthzDetailsTypes: []string{"payment_initiation"}, Resources: []string{"https://api.example/"}}

// deviceRARFixture is a device grant with payment_initiation configured,
// tokens from m, and tvAgent enabled; mod changes the service first.
func deviceRARFixture(t *testing.T, m ciba.Minter, mod func(*ciba.Config, *ciba.Deps)) (*fixture, *ciba.Device) {
	t.Helper()
	reg, err := authzdetails.Compile(authzdetails.Schemas{"payment_initiation": []byte(paySchema)}, authzdetails.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(c *ciba.Config, d *ciba.Deps) {
		c.AuthzDetails, d.Minter = authzdetails.NewLive(authzdetails.Set{Registry: reg}), m
		prev := d.Clients
		d.Clients = func(id string) (*ciba.Client, bool) {
			if id == tvAgent.ID {
				return tvAgent, true
			}
			return prev(id)
		}
		if mod != nil {
			mod(c, d)
		}
	})
	return f, newDevice(t, f, func(c *ciba.DeviceConfig) {
		c.Enabled = func(id string) bool { return id == tvAgent.ID || id == tvClient.ID }
	})
}

// TestDeviceApproveAsShown: a device request's authorization_details are
// stored with it (and a delegate as its actor); an approval with another
// digest changes nothing; tokens that carry another list are not stored;
// an approval with the request's digest records it with the decision.
func TestDeviceApproveAsShown(t *testing.T) {
	ctx := context.Background()
	alice := ciba.User{Subject: "alice", Display: "alice"}
	start := func(t *testing.T, d *ciba.Device, f *fixture) *ciba.AuthRequest {
		t.Helper()
		resp, err := d.AuthorizeParams(ctx, tvAgent, ciba.DeviceParams{AuthorizationDetails: shownPayment, Resources: []string{"https://api.example/"}}, ciba.Binding{})
		if err != nil {
			t.Fatal(err)
		}
		r, err := f.store.GetRequest(ctx, resp.DeviceCode)
		if err != nil {
			t.Fatal(err)
		}
		if r.AuthzDetails == "" || r.Actor != tvAgent.ID || len(r.Resources) != 1 {
			t.Fatalf("stored details %q actor %q resources %v", r.AuthzDetails, r.Actor, r.Resources)
		}
		return r
	}
	t.Run("another digest approves nothing", func(t *testing.T) {
		f, d := deviceRARFixture(t, detailsMinter{}, nil)
		r := start(t, d, f)
		for _, shown := range []string{"", authzdetails.DigestOf([]byte(`[]`))} {
			err := d.ApproveAsShown(ctx, r, alice, shown, nil)
			if !errors.Is(err, ciba.ErrDetailsChanged) || code(err) != ciba.CodeInvalidRequest {
				t.Errorf("ApproveAsShown(%q) = %v; want invalid_request wrapping ErrDetailsChanged", shown, err)
			}
		}
		if got, _ := f.store.GetRequest(ctx, r.ID); got.Status != ciba.StatusPending || got.ApprovedDetails != "" {
			t.Errorf("status %s approved %q, want pending and none", got.Status, got.ApprovedDetails)
		}
	})
	t.Run("tokens that carry another list are not stored", func(t *testing.T) {
		f, d := deviceRARFixture(t, detailsMinter{swap: `[{"type":"payment_initiation","instructedAmount":{"currency":"EUR","amount":"5000.00"}}]`}, nil)
		r := start(t, d, f)
		if err := d.ApproveAsShown(ctx, r, alice, r.DetailsDigest(), nil); code(err) != ciba.CodeServerError {
			t.Errorf("ApproveAsShown = %v; want server_error", err)
		}
		if got, _ := f.store.GetRequest(ctx, r.ID); got.Status != ciba.StatusPending || len(got.Result) > 0 {
			t.Errorf("status %s with %d bytes of tokens; want pending without", got.Status, len(got.Result))
		}
	})
	t.Run("the shown digest is recorded with the approval", func(t *testing.T) {
		f, d := deviceRARFixture(t, detailsMinter{}, nil)
		r := start(t, d, f)
		if err := d.ApproveAsShown(ctx, r, alice, r.DetailsDigest(), nil); err != nil {
			t.Fatal(err)
		}
		got, _ := f.store.GetRequest(ctx, r.ID)
		if got.Status != ciba.StatusApproved || got.ApprovedDetails != r.DetailsDigest() || got.Subject != "alice" {
			t.Errorf("status %s approved %q subject %q; want approved, %q, alice", got.Status, got.ApprovedDetails, got.Subject, r.DetailsDigest())
		}
	})
	t.Run("ApproveAs approves the stored list", func(t *testing.T) {
		f, d := deviceRARFixture(t, detailsMinter{}, nil)
		r := start(t, d, f)
		if err := d.ApproveAs(ctx, r, alice); err != nil {
			t.Fatal(err)
		}
		if got, _ := f.store.GetRequest(ctx, r.ID); got.ApprovedDetails != r.DetailsDigest() {
			t.Errorf("approved %q, want %q", got.ApprovedDetails, r.DetailsDigest())
		}
	})
}

// TestApproveByShown: tokens from elsewhere (a federated sign-in) are
// stored with the digest of the details shown before the sign-in, in the
// same compare-and-set, which refuses another digest.
func TestApproveByShown(t *testing.T) {
	ctx := context.Background()
	f := shownFixture(t, detailsMinter{})
	id := f.create(t, agentClient, func(p *ciba.AuthParams) { p.AuthorizationDetails = shownPayment })
	r, _ := f.store.GetRequest(ctx, id)
	now := time.Now()
	if err := f.svc.ApproveByShown(ctx, id, now, []byte(`{"access_token":"x"}`), "", authzdetails.DigestOf([]byte(`[]`))); !errors.Is(err, ciba.ErrDetailsChanged) {
		t.Errorf("ApproveByShown with another digest = %v; want ErrDetailsChanged", err)
	}
	if got, _ := f.store.GetRequest(ctx, id); got.Status != ciba.StatusPending {
		t.Fatalf("status %s, want pending", got.Status)
	}
	if err := f.svc.ApproveByShown(ctx, id, now, []byte(`{"access_token":"x"}`), "", r.DetailsDigest()); err != nil {
		t.Fatal(err)
	}
	if got, _ := f.store.GetRequest(ctx, id); got.Status != ciba.StatusApproved || got.ApprovedDetails != r.DetailsDigest() {
		t.Errorf("status %s approved %q; want approved, %q", got.Status, got.ApprovedDetails, r.DetailsDigest())
	}
}

// TestDeviceRelayRefusesDetails: a relaying upstream takes only the scope
// of a device request, so details and resources are refused there, never
// dropped.
func TestDeviceRelayRefusesDetails(t *testing.T) {
	relay := &fakeDeviceRelay{fakeRelay: &fakeRelay{interval: time.Hour, expires: time.Minute, polls: map[string]int{}}}
	_, d := deviceRARFixture(t, nil, func(_ *ciba.Config, deps *ciba.Deps) {
		deps.Now, deps.Relay, deps.Upstream = time.Now, relay, nil
	})
	ctx := context.Background()
	if _, err := d.AuthorizeParams(ctx, tvAgent, ciba.DeviceParams{AuthorizationDetails: shownPayment}, ciba.Binding{}); code(err) != ciba.CodeInvalidAuthorizationDetails {
		t.Errorf("details relayed: %v; want invalid_authorization_details", err)
	}
	if _, err := d.AuthorizeParams(ctx, tvAgent, ciba.DeviceParams{Resources: []string{"https://api.example/"}}, ciba.Binding{}); code(err) != ciba.CodeInvalidTarget {
		t.Errorf("resource relayed: %v; want invalid_target", err)
	}
	if len(relay.scopes) != 0 {
		t.Errorf("%d requests reached the upstream", len(relay.scopes))
	}
	if _, err := d.AuthorizeParams(ctx, tvAgent, ciba.DeviceParams{}, ciba.Binding{}); err != nil {
		t.Errorf("without details: %v", err)
	}
}

// TestDeviceDetailsAskTheValidationHook: authorization_details sent at
// /device_authorization are judged by the validation hook exactly as at
// bc-authorize, so a policy on them ("no payments above 1000 EUR") cannot
// be bypassed through the device grant: a refusal is access_denied with
// the hook's reason and nothing is stored; the hook is told the details,
// the delegate, the origin and that the request is a device grant's (no
// hint, no subject); a device request without details is not asked about,
// as before, and neither is a client with skip_validation.
func TestDeviceDetailsAskTheValidationHook(t *testing.T) {
	origin := ciba.Origin{Addr: netip.MustParseAddr("203.0.113.9"), RequestID: "rid-dev"}
	ctx := ciba.WithOrigin(context.Background(), origin)
	hook := newPolicyHook(t, func(m validate.Message) (int, string) {
		if strings.Contains(string(m.AuthorizationDetails), `"amount":"50.00"`) {
			return 200, `{"allow":false,"reason":"no payments from this device"}`
		}
		return 200, `{"allow":true}`
	})
	f, d := deviceRARFixture(t, detailsMinter{}, func(_ *ciba.Config, deps *ciba.Deps) { deps.Validator = hook.hook })

	_, err := d.AuthorizeParams(ctx, tvAgent, ciba.DeviceParams{AuthorizationDetails: shownPayment}, ciba.Binding{})
	if e := ciba.AsError(err); e.Code != ciba.CodeAccessDenied || !strings.Contains(e.Description, "no payments from this device") {
		t.Fatalf("device details the hook refuses: %v; want access_denied with its reason", err)
	}
	if n := storedRequests(t, f.store); n != 0 {
		t.Fatalf("%d requests stored after a refusal, want none", n)
	}
	calls := hook.seen()
	if len(calls) != 1 {
		t.Fatalf("the hook was called %d times, want once", len(calls))
	}
	m := calls[0]
	if m.Grant != ciba.GrantDevice || m.HintType != "" || m.Subject != "" || m.ClientID != tvAgent.ID || !m.ActsForUser ||
		m.ClientIP != "203.0.113.9" || m.RequestID != "rid-dev" || m.Scope != "openid" || string(m.AuthorizationDetails) == "" {
		t.Errorf("the hook was told %+v", m)
	}

	small := `[{"type":"payment_initiation","instructedAmount":{"currency":"EUR","amount":"20.00"}}]`
	if _, err := d.AuthorizeParams(ctx, tvAgent, ciba.DeviceParams{AuthorizationDetails: small}, ciba.Binding{}); err != nil {
		t.Fatalf("device details the hook allows: %v", err)
	}
	if _, err := d.AuthorizeParams(ctx, tvAgent, ciba.DeviceParams{}, ciba.Binding{}); err != nil {
		t.Fatalf("a device request without details: %v", err)
	}
	if n := len(hook.seen()); n != 2 {
		t.Errorf("the hook was called %d times, want 2 (a device request without details is not asked about)", n)
	}
	skip := *tvAgent
	skip.SkipValidation = true
	f2, d2 := deviceRARFixture(t, detailsMinter{}, func(_ *ciba.Config, deps *ciba.Deps) {
		deps.Validator = hook.hook
		prev := deps.Clients
		deps.Clients = func(id string) (*ciba.Client, bool) {
			if id == skip.ID {
				return &skip, true
			}
			return prev(id)
		}
	})
	if _, err := d2.AuthorizeParams(ctx, &skip, ciba.DeviceParams{AuthorizationDetails: shownPayment}, ciba.Binding{}); err != nil {
		t.Fatalf("a skip_validation client: %v", err)
	}
	if n := len(hook.seen()); n != 2 || storedRequests(t, f2.store) != 1 {
		t.Errorf("skip_validation: the hook was called %d times in all, want 2", n)
	}
}
