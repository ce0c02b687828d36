package ciba_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

var (
	tvClient  = &ciba.Client{ID: "tv", Name: "Living-room TV"}
	tvNarrow  = &ciba.Client{ID: "tv-narrow", Scopes: []string{"openid", "email"}}
	notDevice = pollClient // registered, but not for the device grant
)

func newDevice(t *testing.T, f *fixture, mod func(*ciba.DeviceConfig)) *ciba.Device {
	t.Helper()
	cfg := ciba.DeviceConfig{
		VerificationURI: "https://op.example/device",
		Enabled:         func(id string) bool { return id == tvClient.ID || id == tvNarrow.ID },
	}
	if mod != nil {
		mod(&cfg)
	}
	d, err := ciba.NewDevice(f.svc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func deviceFixture(t *testing.T) (*fixture, *ciba.Device) {
	f := newFixture(t, func(_ *ciba.Config, d *ciba.Deps) {
		prev := d.Clients
		d.Clients = func(id string) (*ciba.Client, bool) {
			switch id {
			case tvClient.ID:
				return tvClient, true
			case tvNarrow.ID:
				return tvNarrow, true
			}
			return prev(id)
		}
	})
	return f, newDevice(t, f, nil)
}

func TestDeviceAuthorizeResponse(t *testing.T) {
	f, d := deviceFixture(t)
	resp, err := d.Authorize(context.Background(), tvClient, "openid profile")
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.DeviceCode) < 32 { // 24 bytes base64url: 192 bits
		t.Errorf("device_code %d characters, want at least 128 bits", len(resp.DeviceCode))
	}
	if len(resp.UserCode) != 9 || resp.UserCode[4] != '-' {
		t.Errorf("user_code %q, want XXXX-XXXX", resp.UserCode)
	}
	if strings.Trim(strings.ReplaceAll(resp.UserCode, "-", ""), ciba.DefaultUserCodeCharset) != "" {
		t.Errorf("user_code %q has characters outside %s", resp.UserCode, ciba.DefaultUserCodeCharset)
	}
	if resp.VerificationURI != "https://op.example/device" || resp.VerificationURIComplete != "https://op.example/device?user_code="+resp.UserCode {
		t.Errorf("verification uris %q %q", resp.VerificationURI, resp.VerificationURIComplete)
	}
	if resp.ExpiresIn != 600 || resp.Interval != 5 {
		t.Errorf("expires_in %d interval %d, want 600 and 5", resp.ExpiresIn, resp.Interval)
	}
	r, err := f.store.GetRequest(context.Background(), resp.DeviceCode)
	if err != nil {
		t.Fatalf("the device_code is the request's ID: %v", err)
	}
	if r.Kind != ciba.KindDevice || r.Status != ciba.StatusPending || r.Subject != "" || r.UserNotice.Due {
		t.Errorf("stored %+v", r)
	}
}

func TestDeviceAuthorizeErrors(t *testing.T) {
	_, d := deviceFixture(t)
	for _, tc := range []struct {
		name   string
		client *ciba.Client
		scope  string
		want   ciba.ErrorCode
	}{
		{"a client not registered for the grant is unauthorized_client", notDevice, "openid", ciba.CodeUnauthorizedClient},
		{"a scope the client may not ask for is invalid_scope", tvNarrow, "openid profile", ciba.CodeInvalidScope},
		{"a malformed scope is invalid_scope (RFC 6749 §3.3)", tvClient, "open\"id", ciba.CodeInvalidScope},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := d.Authorize(context.Background(), tc.client, tc.scope)
			if code(err) != tc.want {
				t.Fatalf("got %v, want %s", err, tc.want)
			}
		})
	}
	t.Run("unauthorized_client names the setting that is missing", func(t *testing.T) {
		_, err := d.Authorize(context.Background(), notDevice, "openid")
		if err == nil || !strings.Contains(err.Error(), "lacks device_authorization: true") {
			t.Fatalf("got %v, want the missing device_authorization: true named", err)
		}
	})
	t.Run("scope is optional (RFC 8628 §3.1): openid by default", func(t *testing.T) {
		resp, err := d.Authorize(context.Background(), tvClient, "")
		if err != nil {
			t.Fatal(err)
		}
		r, _, err := d.ForUserCode(context.Background(), resp.UserCode)
		if err != nil || strings.Join(r.Scopes, " ") != "openid" {
			t.Fatalf("scopes %v, %v", r, err)
		}
	})
}

func TestNewDeviceRefusesWeakUserCodes(t *testing.T) {
	f := newFixture(t, nil)
	for _, tc := range []struct {
		charset string
		n       int
	}{
		{"BCDF", 8},                        // 16 bits
		{"0123456789", 6},                  // 20 bits
		{"abcdefghijklmnopqrstuvwxyz", 12}, // lower case never matches a normalised code
		{"BCDFB", 20},                      // repeated character
		{"BCD-F", 20},                      // the dash is the separator
	} {
		if _, err := ciba.NewDevice(f.svc, ciba.DeviceConfig{VerificationURI: "https://x/device", UserCodeCharset: tc.charset, UserCodeLength: tc.n}); err == nil {
			t.Errorf("charset %q length %d accepted", tc.charset, tc.n)
		}
	}
	d, err := ciba.NewDevice(f.svc, ciba.DeviceConfig{VerificationURI: "https://x/device", UserCodeCharset: "0123456789", UserCodeLength: 10})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := d.Authorize(context.Background(), tvClient, "openid")
	if code(err) != ciba.CodeUnauthorizedClient || resp != nil {
		t.Fatalf("without Enabled no client may use the grant: %v", err)
	}
}

func TestDeviceUserCodeCharsetAndLength(t *testing.T) {
	f, _ := deviceFixture(t)
	d := newDevice(t, f, func(c *ciba.DeviceConfig) { c.UserCodeCharset = "0123456789"; c.UserCodeLength = 10 })
	resp, err := d.Authorize(context.Background(), tvClient, "openid")
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.UserCode) != 12 || strings.Trim(strings.ReplaceAll(resp.UserCode, "-", ""), "0123456789") != "" {
		t.Fatalf("user_code %q, want 10 digits grouped by four", resp.UserCode)
	}
}

func TestDeviceForUserCode(t *testing.T) {
	ctx := context.Background()
	f, d := deviceFixture(t)
	resp, err := d.Authorize(ctx, tvClient, "openid")
	if err != nil {
		t.Fatal(err)
	}
	typed := strings.ToLower(strings.ReplaceAll(resp.UserCode, "-", " "))
	r, c, err := d.ForUserCode(ctx, typed)
	if err != nil || r.ID != resp.DeviceCode || c.ID != tvClient.ID {
		t.Fatalf("lower case with spaces: %v %v %v", r, c, err)
	}
	for _, bad := range []string{"", "BCDF-GHJ", "AAAA-AAAA", "BCDF-GHJKL", "BCDFGHJK"} {
		if _, _, err := d.ForUserCode(ctx, bad); !errors.Is(err, ciba.ErrNotFound) {
			t.Errorf("%q: %v, want ErrNotFound", bad, err)
		}
	}
	// A CIBA request is never reachable by a user code.
	id := f.create(t, pollClient)
	cr, _ := f.store.GetRequest(ctx, id)
	if err := f.store.PutRecord(ctx, ciba.UserCodeRecord, "ZZZZZZZZ", []byte(cr.ID), time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.ForUserCode(ctx, "ZZZZ-ZZZZ"); !errors.Is(err, ciba.ErrNotFound) {
		t.Fatalf("CIBA request by user code: %v", err)
	}
}

// poll is the device poll of tvClient.
func devicePoll(d *ciba.Device, dc string) ([]byte, error) {
	return d.Poll(context.Background(), tvClient, dc)
}

func TestDeviceFlowStates(t *testing.T) {
	ctx := context.Background()
	alice := ciba.User{Subject: "sub-alice", Display: "alice"}

	t.Run("pending, slow_down +5s enforced, approved, tokens once, then invalid_grant", func(t *testing.T) {
		f, d := deviceFixture(t)
		resp, _ := d.Authorize(ctx, tvClient, "openid")
		if _, err := devicePoll(d, resp.DeviceCode); code(err) != ciba.CodeAuthorizationPending {
			t.Fatalf("first poll: %v", err)
		}
		f.clock.Add(2 * time.Second)
		if _, err := devicePoll(d, resp.DeviceCode); code(err) != ciba.CodeSlowDown {
			t.Fatalf("poll after 2s of 5: %v, want slow_down", err)
		}
		f.clock.Add(6 * time.Second) // 6 < the new interval of 10
		if _, err := devicePoll(d, resp.DeviceCode); code(err) != ciba.CodeSlowDown {
			t.Fatalf("poll 6s after a slow_down: %v, want slow_down (the interval is now 10s)", err)
		}
		f.clock.Add(16 * time.Second) // interval now 15
		if _, err := devicePoll(d, resp.DeviceCode); code(err) != ciba.CodeAuthorizationPending {
			t.Fatalf("poll on time: %v", err)
		}
		r, _, err := d.ForUserCode(ctx, resp.UserCode)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.ApproveAs(ctx, r, alice); err != nil {
			t.Fatal(err)
		}
		stored, _ := f.store.GetRequest(ctx, resp.DeviceCode)
		if stored.Status != ciba.StatusApproved || stored.Subject != "sub-alice" || stored.LoginHint != "alice" {
			t.Fatalf("approved request %+v", stored)
		}
		body, err := devicePoll(d, resp.DeviceCode)
		if err != nil {
			t.Fatalf("poll after approval: %v", err)
		}
		var tr ciba.TokenResponse
		if err := json.Unmarshal(body, &tr); err != nil || tr.IDToken != "idt-sub-alice" {
			t.Fatalf("tokens %s %v", body, err)
		}
		if tr.AccessToken != "at-" {
			t.Errorf("the Minter saw ID %q: the device_code must not reach the tokens", strings.TrimPrefix(tr.AccessToken, "at-"))
		}
		_, err = devicePoll(d, resp.DeviceCode)
		if code(err) != ciba.CodeInvalidGrant || !strings.Contains(err.Error(), "device_code") {
			t.Fatalf("second redemption: %v, want invalid_grant naming the device_code", err)
		}
		if _, _, err := d.ForUserCode(ctx, resp.UserCode); code(err) != ciba.CodeInvalidRequest {
			t.Fatalf("the user code after use: %v, want already approved", err)
		}
		if err := d.ApproveAs(ctx, r, alice); code(err) != ciba.CodeInvalidRequest {
			t.Fatalf("a second approval with the old copy: %v, want refused by the CAS", err)
		}
	})

	t.Run("denied is access_denied", func(t *testing.T) {
		_, d := deviceFixture(t)
		resp, _ := d.Authorize(ctx, tvClient, "openid")
		r, _, _ := d.ForUserCode(ctx, resp.UserCode)
		if err := d.Deny(ctx, r, "the user denied the request"); err != nil {
			t.Fatal(err)
		}
		if _, err := devicePoll(d, resp.DeviceCode); code(err) != ciba.CodeAccessDenied || ciba.AsError(err).HTTPStatus() != 400 {
			t.Fatalf("%v, want access_denied with 400", err)
		}
		if err := d.ApproveAs(ctx, r, alice); code(err) != ciba.CodeAccessDenied {
			t.Fatalf("approve after deny: %v", err)
		}
	})

	t.Run("expired is expired_token, and cannot be approved", func(t *testing.T) {
		f, d := deviceFixture(t)
		resp, _ := d.Authorize(ctx, tvClient, "openid")
		r, _, _ := d.ForUserCode(ctx, resp.UserCode)
		f.clock.Add(10*time.Minute + time.Second)
		if _, err := devicePoll(d, resp.DeviceCode); code(err) != ciba.CodeExpiredToken {
			t.Fatalf("%v, want expired_token", err)
		}
		if _, _, err := d.ForUserCode(ctx, resp.UserCode); code(err) != ciba.CodeExpiredToken {
			t.Fatalf("page lookup: %v, want expired", err)
		}
		if err := d.ApproveAs(ctx, r, alice); code(err) != ciba.CodeExpiredToken {
			t.Fatalf("approve: %v, want expired_token", err)
		}
	})

	t.Run("unknown, other client's, CIBA ids are invalid_grant; device codes are not auth_req_ids", func(t *testing.T) {
		f, d := deviceFixture(t)
		resp, _ := d.Authorize(ctx, tvClient, "openid")
		if _, err := devicePoll(d, "nope"); code(err) != ciba.CodeInvalidGrant {
			t.Errorf("unknown: %v", err)
		}
		if _, err := d.Poll(ctx, tvNarrow, resp.DeviceCode); code(err) != ciba.CodeInvalidGrant {
			t.Errorf("other client: %v", err)
		}
		cibaID := f.create(t, pollClient)
		if _, err := d.Poll(ctx, tvClient, cibaID); code(err) != ciba.CodeInvalidGrant {
			t.Errorf("auth_req_id as device_code: %v", err)
		}
		if _, err := f.svc.Poll(ctx, tvClient, resp.DeviceCode); code(err) != ciba.CodeInvalidGrant {
			t.Errorf("device_code as auth_req_id: %v", err)
		}
		if _, err := devicePoll(d, ""); code(err) != ciba.CodeInvalidRequest {
			t.Errorf("missing device_code: %v", err)
		}
		if _, err := d.Poll(ctx, notDevice, resp.DeviceCode); code(err) != ciba.CodeUnauthorizedClient {
			t.Errorf("client without the grant: %v", err)
		}
	})

	t.Run("concurrent polls after approval yield exactly one token response", func(t *testing.T) {
		f, d := deviceFixture(t)
		resp, _ := d.Authorize(ctx, tvClient, "openid")
		r, _, _ := d.ForUserCode(ctx, resp.UserCode)
		if err := d.ApproveAs(ctx, r, alice); err != nil {
			t.Fatal(err)
		}
		f.clock.Add(time.Hour / 60) // on time
		var wg sync.WaitGroup
		var mu sync.Mutex
		got := map[ciba.ErrorCode]int{}
		for range 50 {
			wg.Go(func() {
				_, err := devicePoll(d, resp.DeviceCode)
				mu.Lock()
				got[code(err)]++
				mu.Unlock()
			})
		}
		wg.Wait()
		if got[""] != 1 || got[ciba.CodeInvalidGrant] != 49 {
			t.Fatalf("outcomes %v, want one success and 49 invalid_grant", got)
		}
	})
}

func TestDeviceApproveNeedsMinter(t *testing.T) {
	f := newFixture(t, func(_ *ciba.Config, d *ciba.Deps) { d.Minter = nil })
	d := newDevice(t, f, nil)
	resp, err := d.Authorize(context.Background(), tvClient, "openid")
	if err != nil {
		t.Fatal(err)
	}
	r, _ := f.store.GetRequest(context.Background(), resp.DeviceCode)
	if err := d.ApproveAs(context.Background(), r, ciba.User{Subject: "s"}); code(err) != ciba.CodeInvalidRequest {
		t.Fatalf("%v, want invalid_request", err)
	}
}

func TestFormatAndNormalizeUserCode(t *testing.T) {
	if got := ciba.FormatUserCode("BDWPHQPK"); got != "BDWP-HQPK" {
		t.Errorf("format %q", got)
	}
	if got := ciba.NormalizeUserCode(" bdwp-hqpk "); got != "BDWPHQPK" {
		t.Errorf("normalize %q", got)
	}
	if b := ciba.UserCodeBits(ciba.DefaultUserCodeCharset, 8); b < 34 || b > 35 {
		t.Errorf("bits %f", b)
	}
}

// TestDeviceErrorsNameTheDeviceCode: every error of the device poll names
// the device_code where it names the request's ID (RFC 8628 §3.4), and
// none says auth_req_id, a parameter a device client never sent; the same
// states polled on the CIBA grant still say auth_req_id.
func TestDeviceErrorsNameTheDeviceCode(t *testing.T) {
	ctx := context.Background()
	alice := ciba.User{Subject: "sub-alice", Display: "alice"}
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
	authorize := func(cert string) string {
		resp, err := d.AuthorizeCert(ctx, tvClient, "openid", cert)
		if err != nil {
			t.Fatal(err)
		}
		return resp.DeviceCode
	}
	approve := func(dc string) {
		r, err := f.store.GetRequest(ctx, dc)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.ApproveAs(ctx, r, alice); err != nil {
			t.Fatal(err)
		}
	}
	bound := authorize(certA)
	used := authorize("")
	approve(used)
	if _, err := d.Poll(ctx, tvClient, used); err != nil {
		t.Fatal(err)
	}
	denied := authorize("")
	r, _ := f.store.GetRequest(ctx, denied)
	if err := d.Deny(ctx, r, "the user denied the request"); err != nil {
		t.Fatal(err)
	}
	pending := authorize("")
	if _, err := d.Poll(ctx, tvClient, pending); code(err) != ciba.CodeAuthorizationPending {
		t.Fatalf("first poll: %v", err)
	}

	for _, tc := range []struct {
		name, code, cert string
		want             ciba.ErrorCode
		names            bool // the description names the request's ID
	}{
		{"missing", "", "", ciba.CodeInvalidRequest, true},
		{"unknown", "nope", "", ciba.CodeInvalidGrant, true},
		{"bound, no certificate", bound, "", ciba.CodeInvalidGrant, true},
		{"bound, another certificate", bound, certB, ciba.CodeInvalidGrant, true},
		{"already used", used, "", ciba.CodeInvalidGrant, true},
		{"denied", denied, "", ciba.CodeAccessDenied, false},
		{"too early", pending, "", ciba.CodeSlowDown, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := d.PollCert(ctx, tvClient, tc.code, tc.cert)
			e := ciba.AsError(err)
			if err == nil || e.Code != tc.want {
				t.Fatalf("err = %v, want %s", err, tc.want)
			}
			if strings.Contains(e.Description, "auth_req_id") || tc.names && !strings.Contains(e.Description, "device_code") {
				t.Fatalf("description %q: want the device_code named, never auth_req_id", e.Description)
			}
		})
	}
	t.Run("expired", func(t *testing.T) {
		f.clock.Add(time.Hour)
		_, err := d.Poll(ctx, tvClient, pending)
		if e := ciba.AsError(err); e.Code != ciba.CodeExpiredToken || e.Description != "the device_code has expired" {
			t.Fatalf("err = %v, want expired_token naming the device_code", err)
		}
	})
	t.Run("the CIBA grant still says auth_req_id", func(t *testing.T) {
		id := f.create(t, pollClient)
		_, err := f.svc.Poll(ctx, pollClient, id)
		if code(err) != ciba.CodeAuthorizationPending {
			t.Fatalf("first poll: %v", err)
		}
		f.clock.Add(time.Hour)
		_, err = f.svc.Poll(ctx, pollClient, id)
		if e := ciba.AsError(err); e.Code != ciba.CodeExpiredToken || e.Description != "the auth_req_id has expired" {
			t.Fatalf("err = %v, want expired_token naming the auth_req_id", err)
		}
	})
}
