package webpush_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	gojose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/cibaproxy/cibaproxy/internal/outbound"
	"github.com/cibaproxy/cibaproxy/internal/store/memory"
	"github.com/cibaproxy/cibaproxy/internal/webpush"
	"github.com/cibaproxy/cibaproxy/internal/webpush/webpushtest"
)

// TestSendIsReadableByTheBrowserAndSignedForThePushService: the push
// service gets an aes128gcm body the subscription's keys decrypt, TTL and
// Urgency, and a VAPID token for its origin signed by the key k names.
func TestSendIsReadableByTheBrowserAndSignedForThePushService(t *testing.T) {
	ps := webpushtest.New(t)
	vapid, err := webpush.LoadVAPID(t.Context(), memory.New())
	if err != nil {
		t.Fatal(err)
	}
	_, sub := ps.Subscribe(t, "/push/abc")
	now := time.Now()
	s := &webpush.Sender{Client: webpushtest.Client(), VAPID: vapid, Subject: "mailto:ops@example.com", Urgency: "high", Now: func() time.Time { return now }}
	if err := s.Send(t.Context(), sub, []byte(`{"hello":"world"}`), 90*time.Second); err != nil {
		t.Fatal(err)
	}
	g := ps.MustWait(t, 10*time.Second)
	if g.Path != "/push/abc" || g.Header.Get("Content-Encoding") != "aes128gcm" || g.Header.Get("TTL") != "90" || g.Header.Get("Urgency") != "high" {
		t.Fatalf("%s, headers: %v", g.Path, g.Header)
	}
	if g.DecryptErr != nil || string(g.Plain) != `{"hello":"world"}` {
		t.Fatalf("decrypt: %q, %v", g.Plain, g.DecryptErr)
	}
	auth, ok := strings.CutPrefix(g.Header.Get("Authorization"), "vapid t=")
	tok, k, ok2 := strings.Cut(auth, ", k=")
	if !ok || !ok2 || k != vapid.PublicKey() {
		t.Fatalf("Authorization: %q", g.Header.Get("Authorization"))
	}
	pt, err := base64.RawURLEncoding.DecodeString(k)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), pt)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := jwt.ParseSigned(tok, []gojose.SignatureAlgorithm{gojose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	var c jwt.Claims
	if err := parsed.Claims(pub, &c); err != nil {
		t.Fatalf("the VAPID token does not verify with k: %v", err)
	}
	if err := c.ValidateWithLeeway(jwt.Expected{AnyAudience: jwt.Audience{ps.URL}, Time: now}, 0); err != nil {
		t.Fatalf("claims: %v (%+v)", err, c)
	}
	if c.Subject != "mailto:ops@example.com" || c.Expiry.Time().After(now.Add(24*time.Hour)) {
		t.Fatalf("claims: %+v", c)
	}
}

// TestSendGoneAndRefused: 404 and 410 are ErrGone, 400 and 403
// ErrRefused, 500 neither.
func TestSendGoneAndRefused(t *testing.T) {
	ps := webpushtest.New(t)
	vapid, _ := webpush.LoadVAPID(t.Context(), memory.New())
	_, sub := ps.Subscribe(t, "/p")
	s := &webpush.Sender{Client: webpushtest.Client(), VAPID: vapid, Subject: "mailto:ops@example.com"}
	for code, want := range map[int]error{404: webpush.ErrGone, 410: webpush.ErrGone, 400: webpush.ErrRefused, 403: webpush.ErrRefused, 500: nil} {
		ps.SetStatus(code)
		err := s.Send(t.Context(), sub, []byte("x"), time.Minute)
		if err == nil || (want != nil && !errors.Is(err, want)) || (want == nil && (errors.Is(err, webpush.ErrGone) || errors.Is(err, webpush.ErrRefused))) {
			t.Errorf("HTTP %d: %v, want %v", code, err, want)
		}
		if m := ps.MustWait(t, 10*time.Second); m.Status != code {
			t.Errorf("the service answered %d, want %d", m.Status, code)
		}
	}
}

// TestSendUnderTheGuard: without an allowance a loopback push endpoint is
// refused before anything is sent.
func TestSendUnderTheGuard(t *testing.T) {
	vapid, _ := webpush.LoadVAPID(t.Context(), memory.New())
	ps := webpushtest.New(t)
	_, sub := ps.Subscribe(t, "/p")
	sub.Endpoint = "https" + strings.TrimPrefix(sub.Endpoint, "http") // the scheme allowed: the address is refused
	s := &webpush.Sender{Client: outbound.New(time.Second, outbound.Guard(outbound.Policy{})), VAPID: vapid, Subject: "mailto:a@b.c"}
	var refused *outbound.RefusedError
	if err := s.Send(t.Context(), sub, []byte("x"), time.Minute); !errors.As(err, &refused) {
		t.Fatalf("a loopback endpoint: %v, want a RefusedError", err)
	}
	if m, ok := ps.Pending(); ok {
		t.Fatalf("a refused endpoint got a message at %s", m.Path)
	}
}

// TestParseSubscriptionRefusesBadInput names what is wrong.
func TestParseSubscriptionRefusesBadInput(t *testing.T) {
	for _, js := range []string{
		`nope`,
		`{"keys":{"p256dh":"BCVx","auth":"AAAAAAAAAAAAAAAAAAAAAA"}}`,
		`{"endpoint":"ftp://x/y","keys":{}}`,
		`{"endpoint":"https://push.example/x","keys":{"p256dh":"AAAA","auth":"AAAAAAAAAAAAAAAAAAAAAA"}}`,
		`{"endpoint":"https://push.example/x","keys":{"p256dh":"BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4","auth":"AAAA"}}`,
	} {
		if _, err := webpush.ParseSubscription([]byte(js)); err == nil {
			t.Errorf("%s was taken", js)
		}
	}
}
