package ciba_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// fakeDeviceRelay is a CIBA upstream that also has the device grant: its
// device codes are polled with the script of the embedded fakeRelay.
type fakeDeviceRelay struct {
	*fakeRelay
	dmu    sync.Mutex
	scopes []string
	noURIC bool
}

func (f *fakeDeviceRelay) StartDevice(_ context.Context, c *ciba.Client, scope string) (ciba.DeviceRelayStarted, error) {
	f.dmu.Lock()
	defer f.dmu.Unlock()
	if f.startErr != nil {
		return ciba.DeviceRelayStarted{}, f.startErr
	}
	f.scopes = append(f.scopes, scope)
	st := ciba.DeviceRelayStarted{
		DeviceCode: fmt.Sprintf("upstream-dc-%d", len(f.scopes)), UserCode: "WDJB-MJHT",
		VerificationURI: "https://idp.example/device", VerificationURIComplete: "https://idp.example/device?user_code=WDJB-MJHT",
		ExpiresIn: f.expires, Interval: f.interval,
	}
	if f.noURIC {
		st.VerificationURIComplete = ""
	}
	return st, nil
}

func (f *fakeDeviceRelay) PollDevice(ctx context.Context, c *ciba.Client, deviceCode string) (ciba.RelayResult, error) {
	return f.Poll(ctx, c, deviceCode)
}

func deviceRelayFixture(t *testing.T, relay *fakeDeviceRelay) (*fixture, *ciba.Device) {
	if relay.polls == nil {
		relay.polls = map[string]int{}
	}
	if relay.expires == 0 {
		relay.expires = time.Minute
	}
	f := newFixture(t, func(cfg *ciba.Config, d *ciba.Deps) {
		d.Now = time.Now
		d.Relay = relay
		d.Upstream = nil
		prev := d.Clients
		d.Clients = func(id string) (*ciba.Client, bool) {
			if id == tvClient.ID {
				return tvClient, true
			}
			return prev(id)
		}
	})
	return f, newDevice(t, f, func(c *ciba.DeviceConfig) { c.Interval = time.Second })
}

// devicePollUntilDone polls fast for a while, as a device that ignores
// interval would (its answers are authorization_pending, then slow_down,
// and never reach the upstream), waits until the upstream's answer is in
// the store, then polls once more for it.
func devicePollUntilDone(t *testing.T, f *fixture, d *ciba.Device, dc string) ([]byte, error) {
	t.Helper()
	for range 20 {
		if body, err := devicePoll(d, dc); code(err) != ciba.CodeAuthorizationPending && code(err) != ciba.CodeSlowDown {
			return body, err
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		r, err := f.store.GetRequest(context.Background(), dc)
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != ciba.StatusPending || r.Expired(time.Now()) {
			return devicePoll(d, dc)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("the device request did not finish")
	return nil, nil
}

func TestDeviceRelay(t *testing.T) {
	ctx := context.Background()

	t.Run("the upstream's user code and URIs go to the client unchanged; the device_code is cibaproxy's", func(t *testing.T) {
		relay := &fakeDeviceRelay{fakeRelay: &fakeRelay{interval: time.Hour, expires: 90 * time.Second, script: []pollAnswer{pending}}}
		f, d := deviceRelayFixture(t, relay)
		resp, err := d.Authorize(ctx, tvClient, "openid email")
		if err != nil {
			t.Fatal(err)
		}
		if resp.UserCode != "WDJB-MJHT" || resp.VerificationURI != "https://idp.example/device" ||
			resp.VerificationURIComplete != "https://idp.example/device?user_code=WDJB-MJHT" {
			t.Errorf("response = %+v, want the upstream's user code and URIs", resp)
		}
		if strings.Contains(resp.DeviceCode, "upstream-dc") || resp.DeviceCode == "" {
			t.Errorf("device_code %q must be cibaproxy's own", resp.DeviceCode)
		}
		if resp.ExpiresIn != 90 || resp.Interval != 1 {
			t.Errorf("expires_in, interval = %d, %d; want the upstream's 90 (shorter than 10m) and cibaproxy's 1", resp.ExpiresIn, resp.Interval)
		}
		if relay.scopes[0] != "openid email" {
			t.Errorf("scope sent upstream = %q", relay.scopes[0])
		}
		r, err := f.store.GetRequest(ctx, resp.DeviceCode)
		if err != nil {
			t.Fatal(err)
		}
		if r.Kind != ciba.KindDevice || strings.Contains(string(r.Relay.ID), "upstream-dc") {
			t.Errorf("stored request: kind %q, upstream device_code stored in the clear: %v", r.Kind, strings.Contains(string(r.Relay.ID), "upstream-dc"))
		}
		if _, _, err := d.ForUserCode(ctx, "WDJB-MJHT"); err == nil {
			t.Error("the upstream's user code must not be usable on cibaproxy's /device page")
		}
	})

	t.Run("a verification_uri_complete the upstream omits is omitted", func(t *testing.T) {
		relay := &fakeDeviceRelay{fakeRelay: &fakeRelay{interval: time.Hour, script: []pollAnswer{pending}}, noURIC: true}
		_, d := deviceRelayFixture(t, relay)
		resp, err := d.Authorize(ctx, tvClient, "")
		if err != nil || resp.VerificationURIComplete != "" {
			t.Fatalf("%+v %v", resp, err)
		}
		if relay.scopes[0] != "openid" {
			t.Errorf("default scope sent upstream = %q, want openid", relay.scopes[0])
		}
	})

	t.Run("the upstream is polled at its interval with its device_code, however often the device polls", func(t *testing.T) {
		relay := &fakeDeviceRelay{fakeRelay: &fakeRelay{interval: 30 * time.Millisecond, script: []pollAnswer{pending, down, pending, tokens}}}
		f, d := deviceRelayFixture(t, relay)
		f.run(t)
		resp, err := d.Authorize(ctx, tvClient, "openid")
		if err != nil {
			t.Fatal(err)
		}
		body, err := devicePollUntilDone(t, f, d, resp.DeviceCode)
		if err != nil || !strings.Contains(string(body), "upstream-at") {
			t.Fatalf("poll: %s %v", body, err)
		}
		if n := relay.pollCount("upstream-dc-1"); n != 4 {
			t.Errorf("upstream polls = %d, want 4 (pending, down: retried, pending, tokens)", n)
		}
		if _, err := devicePoll(d, resp.DeviceCode); code(err) != ciba.CodeInvalidGrant {
			t.Errorf("second redemption: %v, want invalid_grant", err)
		}
	})

	t.Run("the upstream's slow_down grows its interval by 5 s", func(t *testing.T) {
		relay := &fakeDeviceRelay{fakeRelay: &fakeRelay{interval: 10 * time.Millisecond, script: []pollAnswer{slowDown}, polled: make(chan string, 4)}}
		f, d := deviceRelayFixture(t, relay)
		f.run(t)
		resp, err := d.Authorize(ctx, tvClient, "openid")
		if err != nil {
			t.Fatal(err)
		}
		wait(t, relay.polled)
		deadline := time.Now().Add(10 * time.Second)
		for {
			r, err := f.store.GetRequest(ctx, resp.DeviceCode)
			if err != nil {
				t.Fatal(err)
			}
			if r.Relay.Interval == 10*time.Millisecond+5*time.Second && r.Relay.NextPoll.After(time.Now().Add(4*time.Second)) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("relay state after slow_down: %+v", r.Relay)
			}
			time.Sleep(5 * time.Millisecond)
		}
		if n := relay.pollCount("upstream-dc-1"); n != 1 {
			t.Errorf("upstream polls = %d, want 1", n)
		}
	})

	for _, tc := range []struct {
		name   string
		answer pollAnswer
		want   ciba.ErrorCode
	}{
		{"access_denied at the upstream is access_denied", pollAnswer{err: ciba.Errorf(ciba.CodeAccessDenied, "the identity provider answered: denied")}, ciba.CodeAccessDenied},
		{"expired_token at the upstream is expired_token", pollAnswer{err: ciba.Errorf(ciba.CodeExpiredToken, "gone")}, ciba.CodeExpiredToken},
		{"invalid_grant at the upstream ends the request as access_denied", pollAnswer{err: ciba.Errorf(ciba.CodeInvalidGrant, "unknown")}, ciba.CodeAccessDenied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			relay := &fakeDeviceRelay{fakeRelay: &fakeRelay{interval: 10 * time.Millisecond, script: []pollAnswer{tc.answer}}}
			f, d := deviceRelayFixture(t, relay)
			f.run(t)
			resp, err := d.Authorize(ctx, tvClient, "openid")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := devicePollUntilDone(t, f, d, resp.DeviceCode); code(err) != tc.want {
				t.Errorf("poll: %v, want %s", err, tc.want)
			}
		})
	}

	t.Run("an upstream that refuses the request is answered with its code; nothing is stored", func(t *testing.T) {
		relay := &fakeDeviceRelay{fakeRelay: &fakeRelay{startErr: ciba.Errorf(ciba.CodeInvalidScope, "the identity provider answered: no")}}
		_, d := deviceRelayFixture(t, relay)
		if _, err := d.Authorize(ctx, tvClient, "openid"); code(err) != ciba.CodeInvalidScope {
			t.Errorf("authorize: %v, want invalid_scope", err)
		}
		relay.startErr = fmt.Errorf("dial: %w", ciba.ErrUnavailable)
		if _, err := d.Authorize(ctx, tvClient, "openid"); code(err) != ciba.CodeTemporarilyUnavailable {
			t.Errorf("authorize: %v, want temporarily_unavailable", err)
		}
	})

	t.Run("a relay without the device grant cannot serve it", func(t *testing.T) {
		f := relayFixture(t, &fakeRelay{})
		if _, err := ciba.NewDevice(f.svc, ciba.DeviceConfig{VerificationURI: "https://op.example/device"}); err == nil {
			t.Error("NewDevice accepted a Relay that is not a DeviceRelay")
		}
	})
}
