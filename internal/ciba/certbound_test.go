package ciba_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// Thumbprints (x5t#S256, RFC 8705 §3.1) of two client certificates.
const (
	certA = "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"
	certB = "A4DtL2JmUMhAsvJj5tKyn64SqzmuXbMrJa0n761y5v0"
)

// cnfMinter mints an access token that names the thumbprint it was bound
// to, as the local upstream's cnf claim does.
type cnfMinter struct{}

func (cnfMinter) Mint(_ context.Context, r *ciba.AuthRequest, _ time.Time) (*ciba.TokenResponse, error) {
	return &ciba.TokenResponse{AccessToken: "at-" + r.ID + "|cnf=" + r.CertThumbprint, TokenType: "Bearer"}, nil
}

func withCNFMinter(_ *ciba.Config, d *ciba.Deps) { d.Minter = cnfMinter{} }

func accessToken(t *testing.T, body []byte) string {
	t.Helper()
	var tr ciba.TokenResponse
	if err := json.Unmarshal(body, &tr); err != nil {
		t.Fatal(err)
	}
	return tr.AccessToken
}

// RFC 8705 §3: a request made with a client certificate is bound to it; its
// tokens are handed out only over a connection presenting the same one.
func TestPollCertBound(t *testing.T) {
	ctx := context.Background()
	bound := func(p *ciba.AuthParams) { p.CertThumbprint = certA }

	t.Run("the request records the certificate and the minted token carries it", func(t *testing.T) {
		f := newFixture(t, withCNFMinter)
		id := f.create(t, pollClient, bound)
		r, err := f.store.GetRequest(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if r.CertThumbprint != certA {
			t.Fatalf("stored CertThumbprint = %q, want %q", r.CertThumbprint, certA)
		}
		f.approve(t, id)
		body, err := f.svc.PollCert(ctx, pollClient, id, certA)
		if err != nil {
			t.Fatalf("the same certificate: %v", err)
		}
		if at := accessToken(t, body); !strings.HasSuffix(at, "|cnf="+certA) {
			t.Fatalf("access token %q is not bound to %s", at, certA)
		}
	})

	for _, tt := range []struct {
		name, presented string
	}{
		{"another certificate is invalid_grant and the request stays redeemable", certB},
		{"no certificate is invalid_grant and the request stays redeemable", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, withCNFMinter)
			id := f.create(t, pollClient, bound)
			// Before the approval too: a wrong holder learns nothing of
			// the state.
			if _, err := f.svc.PollCert(ctx, pollClient, id, tt.presented); code(err) != ciba.CodeInvalidGrant {
				t.Fatalf("pending, wrong certificate: err = %v, want invalid_grant", err)
			}
			f.approve(t, id)
			_, err := f.svc.PollCert(ctx, pollClient, id, tt.presented)
			if code(err) != ciba.CodeInvalidGrant || !strings.Contains(ciba.AsError(err).Description, "RFC 8705") {
				t.Fatalf("approved, wrong certificate: err = %v, want invalid_grant citing RFC 8705", err)
			}
			if ciba.AsError(err).Status != 400 {
				t.Errorf("status %d, want 400", ciba.AsError(err).Status)
			}
			r, err := f.store.GetRequest(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if r.Status != ciba.StatusApproved || len(r.Result) == 0 {
				t.Fatalf("after the refusal: status %s, result kept %v; want approved with its tokens", r.Status, len(r.Result) > 0)
			}
			body, err := f.svc.PollCert(ctx, pollClient, id, certA)
			if err != nil {
				t.Fatalf("the right certificate after a refusal: %v", err)
			}
			if at := accessToken(t, body); !strings.HasSuffix(at, "|cnf="+certA) {
				t.Fatalf("access token %q is not bound to %s", at, certA)
			}
		})
	}

	t.Run("Poll without a certificate cannot redeem a bound request", func(t *testing.T) {
		f := newFixture(t, withCNFMinter)
		id := f.create(t, pollClient, bound)
		f.approve(t, id)
		if _, err := f.svc.Poll(ctx, pollClient, id); code(err) != ciba.CodeInvalidGrant {
			t.Fatalf("err = %v, want invalid_grant", err)
		}
	})

	t.Run("an unbound request is redeemed with or without a certificate and its token is unbound", func(t *testing.T) {
		f := newFixture(t, withCNFMinter)
		id := f.create(t, pollClient)
		f.approve(t, id)
		body, err := f.svc.PollCert(ctx, pollClient, id, certB)
		if err != nil {
			t.Fatal(err)
		}
		if at := accessToken(t, body); !strings.HasSuffix(at, "|cnf=") {
			t.Fatalf("access token %q of an unbound request is bound", at)
		}
	})
}

// The device_code grant binds the same way (RFC 8705 §3).
func TestDevicePollCertBound(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, func(c *ciba.Config, dp *ciba.Deps) {
		withCNFMinter(c, dp)
		prev := dp.Clients
		dp.Clients = func(id string) (*ciba.Client, bool) {
			if id == tvClient.ID {
				return tvClient, true
			}
			return prev(id)
		}
	})
	d := newDevice(t, f, nil)
	resp, err := d.AuthorizeCert(ctx, tvClient, "openid", certA)
	if err != nil {
		t.Fatal(err)
	}
	r, err := f.store.GetRequest(ctx, resp.DeviceCode)
	if err != nil {
		t.Fatal(err)
	}
	if r.CertThumbprint != certA {
		t.Fatalf("stored CertThumbprint = %q, want %q", r.CertThumbprint, certA)
	}
	if err := d.ApproveAs(ctx, r, ciba.User{Subject: "sub-alice", Display: "alice"}); err != nil {
		t.Fatal(err)
	}
	_, err = d.PollCert(ctx, tvClient, resp.DeviceCode, certB)
	if code(err) != ciba.CodeInvalidGrant {
		t.Fatalf("another certificate: err = %v, want invalid_grant", err)
	}
	if desc := ciba.AsError(err).Description; !strings.Contains(desc, "device_code") {
		t.Errorf("description %q does not name the device_code", desc)
	}
	body, err := d.PollCert(ctx, tvClient, resp.DeviceCode, certA)
	if err != nil {
		t.Fatalf("the right certificate after a refusal: %v", err)
	}
	if at := accessToken(t, body); !strings.HasSuffix(at, "|cnf="+certA) {
		t.Fatalf("access token %q is not bound to %s", at, certA)
	}
}
