package outbound

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestPostJSON(t *testing.T) {
	var gotAuth, gotType, gotBody string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth, gotType = r.Header.Get("Authorization"), r.Header.Get("Content-Type")
		b, _ := io.ReadAll(r.Body)
		gotBody = string(b)
		switch r.URL.Path {
		case "/ok":
			w.WriteHeader(http.StatusNoContent)
		case "/redirect":
			http.Redirect(w, r, "/ok", http.StatusTemporaryRedirect)
		case "/slow":
			time.Sleep(300 * time.Millisecond)
		default:
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	defer srv.Close()
	c := New(100 * time.Millisecond)
	ctx := context.Background()

	if err := c.PostJSON(ctx, srv.URL+"/ok", "tok", []byte(`{"a":1}`)); err != nil {
		t.Fatalf("2xx answer: %v", err)
	}
	if gotAuth != "Bearer tok" || gotType != "application/json" || gotBody != `{"a":1}` {
		t.Fatalf("sent auth %q, type %q, body %q", gotAuth, gotType, gotBody)
	}
	var se *StatusError
	if err := c.PostJSON(ctx, srv.URL+"/fail", "", nil); !errors.As(err, &se) || se.Status != 500 {
		t.Fatalf("a 500 answer is a failure: %v", err)
	}
	if err := c.PostJSON(ctx, srv.URL+"/redirect", "tok", nil); !errors.As(err, &se) || se.Status != 307 {
		t.Fatalf("a redirect is not followed (the bearer must not travel on): %v", err)
	}
	if err := c.PostJSON(ctx, srv.URL+"/slow", "", nil); err == nil {
		t.Fatal("a call past the timeout succeeded")
	}
	if err := c.PostJSON(ctx, "http://127.0.0.1:1/closed", "secret-bearer", nil); err == nil {
		t.Fatal("a closed port succeeded")
	} else if strings.Contains(err.Error(), "secret-bearer") {
		t.Fatalf("the bearer appears in the error: %v", err)
	}
}

// TestSpecialUseRanges: every special-use and private range is refused at
// dial time, in IPv4, IPv6 and the IPv4-mapped and NAT64 forms; public
// addresses pass.
func TestSpecialUseRanges(t *testing.T) {
	refused := []string{
		"0.0.0.0", "0.1.2.3", "10.0.0.1", "10.255.255.255", "100.64.0.1", "100.127.255.254",
		"127.0.0.1", "127.8.9.10", "169.254.169.254", "169.254.0.1", "172.16.0.1", "172.31.255.255",
		"192.0.0.8", "192.0.2.1", "192.88.99.1", "192.168.1.1", "198.18.0.1", "198.19.255.1",
		"198.51.100.7", "203.0.113.9", "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255",
		"::", "::1", "::127.0.0.1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254",
		"::ffff:192.168.0.1", "64:ff9b::10.0.0.1", "64:ff9b::a9fe:a9fe", "64:ff9b:1::1", "100::1",
		"2001::1", "2001:db8::1", "2002:a00:1::1", "3fff::1", "fc00::1", "fd12:3456::1",
		"fe80::1", "fe80::1%eth0", "fec0::1", "ff02::1", "ff05::1:3",
	}
	public := []string{"8.8.8.8", "1.1.1.1", "100.63.255.255", "100.128.0.1", "172.32.0.1", "192.169.0.1",
		"2606:4700:4700::1111", "2a00:1450:4001::1", "::ffff:8.8.8.8", "64:ff9b::8.8.8.8"}
	var p Policy
	for _, s := range refused {
		a := netip.MustParseAddr(s)
		var re *RefusedError
		if err := p.control("tcp", netip.AddrPortFrom(a, 443).String(), nil); !errors.As(err, &re) {
			t.Errorf("dial to %s allowed, want refused: %v", s, err)
		} else if !strings.Contains(err.Error(), "outbound.allow_networks") {
			t.Errorf("refusal of %s does not say how to allow it: %v", s, err)
		}
	}
	for _, s := range public {
		if err := p.control("tcp", netip.AddrPortFrom(netip.MustParseAddr(s), 443).String(), nil); err != nil {
			t.Errorf("dial to public %s refused: %v", s, err)
		}
	}
}

func TestAllowNetworks(t *testing.T) {
	p := Policy{AllowNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("fd00:1::/32")}}
	for _, s := range []string{"127.0.0.1", "::ffff:127.0.0.1", "fd00:1::5"} {
		if err := p.Check(netip.MustParseAddr(s)); err != nil {
			t.Errorf("%s is in an allowed network but refused: %v", s, err)
		}
	}
	for _, s := range []string{"10.0.0.1", "::1", "169.254.169.254", "fd00:2::5"} {
		if err := p.Check(netip.MustParseAddr(s)); err == nil {
			t.Errorf("%s is outside the allowed networks but allowed", s)
		}
	}
}

// TestGuardedClientDialTime runs real connections: the check is on the
// resolved address, so a host name that resolves to loopback is refused like
// the address itself.
func TestGuardedClientDialTime(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	ctx := context.Background()
	port := srv.Listener.Addr().(*net.TCPAddr).Port

	guarded := New(2*time.Second, Guard(Policy{AllowHTTP: true}))
	for _, u := range []string{srv.URL, fmt.Sprintf("http://localhost:%d/", port)} {
		var re *RefusedError
		if err := guarded.PostJSON(ctx, u, "secret-bearer", nil); !errors.As(err, &re) {
			t.Errorf("POST %s: got %v, want a refused connection", u, err)
		} else if strings.Contains(err.Error(), "secret-bearer") {
			t.Errorf("the bearer appears in the error: %v", err)
		}
	}
	if hits.Load() != 0 {
		t.Fatalf("the receiver on loopback was reached %d times", hits.Load())
	}

	allowed := New(2*time.Second, Guard(Policy{AllowHTTP: true, AllowNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}))
	if err := allowed.PostJSON(ctx, srv.URL, "", nil); err != nil {
		t.Fatalf("loopback is allowlisted but: %v", err)
	}
	if hits.Load() != 1 {
		t.Fatalf("receiver hits = %d, want 1", hits.Load())
	}
}

func TestGuardedClientRequiresHTTPS(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	c := New(2*time.Second, Guard(Policy{AllowNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}))
	if err := c.PostJSON(context.Background(), srv.URL, "tok", nil); !errors.Is(err, ErrPlainHTTP) {
		t.Fatalf("plain http without allow_http: %v, want ErrPlainHTTP", err)
	}
	if hits.Load() != 0 {
		t.Fatal("the http receiver was reached")
	}
	// The same for the jwks_uri fetcher, which uses HTTPClient.
	resp, err := c.HTTPClient().Get(srv.URL)
	if err == nil {
		resp.Body.Close()
	}
	if !errors.Is(err, ErrPlainHTTP) {
		t.Fatalf("HTTPClient GET over http: %v, want ErrPlainHTTP", err)
	}
}

func TestGuardedClientFollowsNoRedirect(t *testing.T) {
	var internal atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { internal.Add(1) }))
	defer target.Close()
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL, http.StatusTemporaryRedirect)
	}))
	defer redirector.Close()
	c := New(2*time.Second, Guard(Policy{AllowHTTP: true, AllowNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}))
	var se *StatusError
	if err := c.PostJSON(context.Background(), redirector.URL, "tok", nil); !errors.As(err, &se) || se.Status != http.StatusTemporaryRedirect {
		t.Fatalf("a redirect answer: %v, want a 307 failure", err)
	}
	if internal.Load() != 0 {
		t.Fatal("the redirect was followed")
	}
}

// TestOversizedAnswerIsCut: a receiver that answers without end costs at
// most maxAnswer bytes of reading.
func TestOversizedAnswerIsCut(t *testing.T) {
	var written atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		chunk := make([]byte, 32<<10)
		for range 3200 { // 100 MiB at most: the loop is bounded
			n, err := w.Write(chunk)
			written.Add(int64(n))
			if err != nil {
				return
			}
		}
	}))
	defer srv.Close()
	c := New(5 * time.Second)
	if err := c.PostJSON(context.Background(), srv.URL, "", nil); err != nil {
		t.Fatalf("a 200 answer: %v", err)
	}
	srv.CloseClientConnections()
	srv.Close() // waits for the handler, which stops once the client is gone
	if n := written.Load(); n >= 100<<20 {
		t.Fatalf("the client read the whole %d-byte answer", n)
	}
}

func TestErrorsHideTheQuery(t *testing.T) {
	c := New(time.Second)
	err := c.PostJSON(context.Background(), "http://user:pw@127.0.0.1:1/cb?token=s3cr3t", "", nil)
	if err == nil || strings.Contains(err.Error(), "s3cr3t") || strings.Contains(err.Error(), "pw@") {
		t.Fatalf("error %v shows the URL's secret parts", err)
	}
}
