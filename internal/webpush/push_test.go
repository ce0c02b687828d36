package webpush_test

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	gojose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/cibaproxy/cibaproxy/internal/outbound"
	"github.com/cibaproxy/cibaproxy/internal/store/memory"
	"github.com/cibaproxy/cibaproxy/internal/webpush"
)

// browser is a user agent's side of a subscription.
type browser struct {
	key  *ecdh.PrivateKey
	auth []byte
}

func newBrowser(t *testing.T, endpoint string) (browser, webpush.Subscription) {
	t.Helper()
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	auth := make([]byte, 16)
	_, _ = rand.Read(auth)
	js := `{"endpoint":"` + endpoint + `","keys":{"p256dh":"` + base64.RawURLEncoding.EncodeToString(k.PublicKey().Bytes()) +
		`","auth":"` + base64.RawURLEncoding.EncodeToString(auth) + `"}}`
	sub, err := webpush.ParseSubscription([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	return browser{k, auth}, sub
}

// loopbackClient is a guarded client that may reach the test server.
func loopbackClient() *outbound.Client {
	return outbound.New(5*time.Second, outbound.Guard(outbound.Policy{AllowHTTP: true,
		AllowNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}))
}

// TestSendIsReadableByTheBrowserAndSignedForThePushService: the push
// service gets an aes128gcm body the subscription's keys decrypt, TTL and
// Urgency, and a VAPID token for its origin signed by the key k names.
func TestSendIsReadableByTheBrowserAndSignedForThePushService(t *testing.T) {
	type got struct {
		h    http.Header
		body []byte
	}
	gotc := make(chan got, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		gotc <- got{r.Header.Clone(), b}
		w.WriteHeader(http.StatusCreated)
	}))
	defer srv.Close()
	vapid, err := webpush.LoadVAPID(t.Context(), memory.New())
	if err != nil {
		t.Fatal(err)
	}
	br, sub := newBrowser(t, srv.URL+"/push/abc")
	now := time.Now()
	s := &webpush.Sender{Client: loopbackClient(), VAPID: vapid, Subject: "mailto:ops@example.com", Urgency: "high", Now: func() time.Time { return now }}
	if err := s.Send(t.Context(), sub, []byte(`{"hello":"world"}`), 90*time.Second); err != nil {
		t.Fatal(err)
	}
	g := <-gotc
	if g.h.Get("Content-Encoding") != "aes128gcm" || g.h.Get("TTL") != "90" || g.h.Get("Urgency") != "high" {
		t.Fatalf("headers: %v", g.h)
	}
	plain, err := webpush.Decrypt(g.body, br.key, br.auth)
	if err != nil || string(plain) != `{"hello":"world"}` {
		t.Fatalf("decrypt: %q, %v", plain, err)
	}
	auth, ok := strings.CutPrefix(g.h.Get("Authorization"), "vapid t=")
	tok, k, ok2 := strings.Cut(auth, ", k=")
	if !ok || !ok2 || k != vapid.PublicKey() {
		t.Fatalf("Authorization: %q", g.h.Get("Authorization"))
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
	if err := c.ValidateWithLeeway(jwt.Expected{AnyAudience: jwt.Audience{srv.URL}, Time: now}, 0); err != nil {
		t.Fatalf("claims: %v (%+v)", err, c)
	}
	if c.Subject != "mailto:ops@example.com" || c.Expiry.Time().After(now.Add(24*time.Hour)) {
		t.Fatalf("claims: %+v", c)
	}
}

// TestSendGoneAndRefused: 404 and 410 are ErrGone, 400 and 403
// ErrRefused, 500 neither.
func TestSendGoneAndRefused(t *testing.T) {
	status := make(chan int, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(<-status)
	}))
	defer srv.Close()
	vapid, _ := webpush.LoadVAPID(t.Context(), memory.New())
	_, sub := newBrowser(t, srv.URL+"/p")
	s := &webpush.Sender{Client: loopbackClient(), VAPID: vapid, Subject: "mailto:ops@example.com"}
	for code, want := range map[int]error{404: webpush.ErrGone, 410: webpush.ErrGone, 400: webpush.ErrRefused, 403: webpush.ErrRefused, 500: nil} {
		status <- code
		err := s.Send(t.Context(), sub, []byte("x"), time.Minute)
		if err == nil || (want != nil && !errors.Is(err, want)) || (want == nil && (errors.Is(err, webpush.ErrGone) || errors.Is(err, webpush.ErrRefused))) {
			t.Errorf("HTTP %d: %v, want %v", code, err, want)
		}
	}
}

// TestSendUnderTheGuard: without an allowance a loopback push endpoint is
// refused before anything is sent.
func TestSendUnderTheGuard(t *testing.T) {
	vapid, _ := webpush.LoadVAPID(t.Context(), memory.New())
	_, sub := newBrowser(t, "https://127.0.0.1:1/p")
	s := &webpush.Sender{Client: outbound.New(time.Second, outbound.Guard(outbound.Policy{})), VAPID: vapid, Subject: "mailto:a@b.c"}
	var refused *outbound.RefusedError
	if err := s.Send(t.Context(), sub, []byte("x"), time.Minute); !errors.As(err, &refused) {
		t.Fatalf("a loopback endpoint: %v, want a RefusedError", err)
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
