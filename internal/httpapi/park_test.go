package httpapi

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/seal"
	"github.com/cibaproxy/cibaproxy/internal/store/memory"
)

// parkFixture is a server with long polling on, its polls parked
// (Parking) unless parking is false, on 127.0.0.1.
type parkFixture struct {
	svc *ciba.Service
	st  ciba.Store
	pk  *Parking
	ts  *httptest.Server
}

// newParkFixture starts the server; hold is the long poll's hold. With
// tlsOn it serves TLS, with h2 also HTTP/2.
func newParkFixture(t *testing.T, hold time.Duration, parking, tlsOn, h2 bool) *parkFixture {
	t.Helper()
	key := make([]byte, 32)
	rand.Read(key)
	ring, _ := seal.NewRing(seal.Key{ID: "k", Secret: key})
	st := memory.New()
	svc, err := ciba.NewService(ciba.Config{
		DefaultExpiry: time.Hour, MaxExpiry: time.Hour, Interval: time.Second, BindingMessageMax: 20,
		PollTolerance: 500 * time.Millisecond, LongPoll: hold,
	}, ciba.Deps{
		Store: st, Upstream: fakeUpstream{}, Minter: fakeUpstream{}, Sealer: ring, Notifier: nopNotifier{},
		Clients: func(string) (*ciba.Client, bool) { return bank, true }, CallbackKey: key,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := &Server{Issuer: "https://ciba.example", Service: svc, Clients: basicAuth{}, Observer: nopObserver{}, Logger: discard(),
		Discovery: func(context.Context) (map[string]any, error) { return nil, nil }}
	f := &parkFixture{svc: svc, st: st}
	if parking {
		f.pk = NewParking(10_000, time.Minute)
		srv.Parking = f.pk
	}
	ts := httptest.NewUnstartedServer(srv.Handler())
	ts.Config.WriteTimeout = time.Minute
	// A new connection must send its request at once, a kept-alive one
	// may wait: a connection given back by the Parking is kept alive.
	ts.Config.ReadHeaderTimeout, ts.Config.IdleTimeout = 300*time.Millisecond, time.Minute
	if parking {
		f.pk.IdleTimeout = time.Minute
	}
	if parking {
		ts.Config.RegisterOnShutdown(f.pk.Release)
		go func() { _ = f.pk.Serve(ts.Config) }()
		waitFor(t, "the parking to serve", f.pk.serving.Load)
	}
	switch {
	case tlsOn:
		ts.EnableHTTP2 = h2
		ts.StartTLS()
	default:
		ts.Start()
	}
	f.ts = ts
	t.Cleanup(ts.Close)
	return f
}

// waitFor waits up to 10 s for cond.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// create makes a pending request and returns its id.
func (f *parkFixture) create(t *testing.T) string {
	t.Helper()
	resp, err := f.svc.Authorize(context.Background(), bank, ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: "alice"}})
	if err != nil {
		t.Fatal(err)
	}
	return resp.AuthReqID
}

// approve approves request id with tokens naming it.
func (f *parkFixture) approve(t *testing.T, id string) {
	t.Helper()
	if err := f.svc.Approve(context.Background(), id, time.Now(), tokensOf(id)); err != nil {
		t.Error(err)
	}
}

// tokensOf is the token response approved for request id.
func tokensOf(id string) []byte {
	return []byte(`{"access_token":"at-` + id + `","token_type":"Bearer","expires_in":300}`)
}

// pollRequest is the raw HTTP/1.1 poll of request id, with a fixed
// request id header so that two answers can be compared byte for byte.
func pollRequest(id string) string {
	body := "grant_type=" + url.QueryEscape(GrantCIBA) + "&auth_req_id=" + id
	return "POST /token HTTP/1.1\r\nHost: ciba.example\r\n" +
		"Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(bank.ID+":bank-secret")) + "\r\n" +
		"Content-Type: application/x-www-form-urlencoded\r\nX-Request-Id: req-1\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

// rawConn is a client connection speaking HTTP/1.1 by hand; all it read
// from the socket is kept in got, so each response's bytes can be told.
type rawConn struct {
	net.Conn
	got  bytes.Buffer
	br   *bufio.Reader
	done int // bytes of got consumed by the responses read
}

func dialRaw(t *testing.T, f *parkFixture) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", f.ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	rc := &rawConn{Conn: c}
	rc.br = bufio.NewReader(io.TeeReader(c, &rc.got))
	return rc
}

// send writes s.
func (c *rawConn) send(t *testing.T, s string) {
	t.Helper()
	if _, err := io.WriteString(c, s); err != nil {
		t.Fatal(err)
	}
}

// read reads one response and returns it and its raw bytes, without the
// Date line.
func (c *rawConn) read(t *testing.T) (*http.Response, []byte) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	end := c.got.Len() - c.br.Buffered()
	raw := bytes.Clone(c.got.Bytes()[c.done:end])
	c.done = end
	return resp, withoutDate(raw)
}

// withoutDate drops the Date line of a raw response.
func withoutDate(raw []byte) []byte {
	var out []byte
	for _, line := range bytes.SplitAfter(raw, []byte("\r\n")) {
		if !bytes.HasPrefix(line, []byte("Date: ")) {
			out = append(out, line...)
		}
	}
	return out
}

// errorOf returns the error code of a JSON error answer.
func errorOf(resp *http.Response) string {
	var e struct{ Error string }
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &e)
	return e.Error
}

// TestParkedPollAnsweredOnApprovalThenKeepAlive: a held poll's connection
// is parked (no goroutine of net/http holds it), answered with the tokens
// when the request is approved, byte for byte as a poll held by net/http
// is answered (but for the Date), and the same connection then serves the
// client's next request.
func TestParkedPollAnsweredOnApprovalThenKeepAlive(t *testing.T) {
	var answers [2][]byte
	for i, parking := range []bool{false, true} {
		f := newParkFixture(t, 30*time.Second, parking, false, false)
		id := f.create(t)
		// The same id in both runs, so the answers can be compared.
		c := dialRaw(t, f)
		c.send(t, pollRequest(id))
		if parking {
			waitFor(t, "the poll to be parked", func() bool { return f.pk.Len() == 1 })
		} else {
			waitFor(t, "the poll to be held", func() bool {
				p, err := f.st.UpdatePace(context.Background(), id, func(*ciba.Pace) error { return nil })
				return err == nil && !p.HoldUntil.IsZero()
			})
		}
		f.approve(t, id)
		resp, raw := c.read(t)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("parking %v: answer %d %v", parking, resp.StatusCode, resp.Header)
		}
		body, _ := io.ReadAll(resp.Body)
		if !bytes.Equal(body, tokensOf(id)) {
			t.Fatalf("parking %v: body %s, want the approved tokens", parking, body)
		}
		answers[i] = bytes.ReplaceAll(raw, []byte(id), []byte("ID"))
		// The same connection serves the next request: the tokens were
		// handed out once.
		c.send(t, pollRequest(id))
		resp, _ = c.read(t)
		if resp.StatusCode != http.StatusBadRequest || errorOf(resp) != "invalid_grant" {
			t.Fatalf("parking %v: second request on the connection: %d", parking, resp.StatusCode)
		}
		if parking && f.pk.Len() != 0 {
			t.Fatalf("%d polls still parked", f.pk.Len())
		}
	}
	if !bytes.Equal(answers[0], answers[1]) {
		t.Fatalf("the parked poll's answer differs from net/http's:\n%q\n%q", answers[1], answers[0])
	}
}

// TestParkedPollAnsweredAtHoldEnd: a parked poll whose request stays
// pending is answered authorization_pending when its hold ends, as net/http
// answers it, and the connection serves the next poll, which is parked in
// turn (the hold was released in the pace).
func TestParkedPollAnsweredAtHoldEnd(t *testing.T) {
	var answers [2][]byte
	for i, parking := range []bool{false, true} {
		f := newParkFixture(t, 300*time.Millisecond, parking, false, false)
		id := f.create(t)
		c := dialRaw(t, f)
		c.send(t, pollRequest(id))
		start := time.Now()
		resp, raw := c.read(t)
		if resp.StatusCode != http.StatusBadRequest || errorOf(resp) != "authorization_pending" {
			t.Fatalf("parking %v: %d", parking, resp.StatusCode)
		}
		if d := time.Since(start); d < 250*time.Millisecond {
			t.Fatalf("parking %v: answered after %s, not held", parking, d)
		}
		answers[i] = bytes.ReplaceAll(raw, []byte(id), []byte("ID"))
		if !parking {
			continue
		}
		// After the interval (longer than the header timeout of a new
		// connection), the next poll on the same connection.
		time.Sleep(time.Second)
		c.send(t, pollRequest(id))
		waitFor(t, "the second poll to be parked", func() bool { return f.pk.Len() == 1 })
		f.approve(t, id)
		resp, _ = c.read(t)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("second poll: %d %s", resp.StatusCode, errorOf(resp))
		}
	}
	if !bytes.Equal(answers[0], answers[1]) {
		t.Fatalf("the parked poll's answer differs from net/http's:\n%q\n%q", answers[1], answers[0])
	}
}

// TestParkedPollClientClosed: a client that closes its connection while
// its poll is parked is noticed when the poll is answered: the tokens of
// the approved request are not handed out to the closed connection but to
// the client's next poll.
func TestParkedPollClientClosed(t *testing.T) {
	f := newParkFixture(t, 30*time.Second, true, false, false)
	id := f.create(t)
	c := dialRaw(t, f)
	c.send(t, pollRequest(id))
	waitFor(t, "the poll to be parked", func() bool { return f.pk.Len() == 1 })
	c.Close()
	f.approve(t, id)
	waitFor(t, "the parked poll of the closed connection to end", func() bool {
		p, err := f.st.UpdatePace(context.Background(), id, func(*ciba.Pace) error { return nil })
		return f.pk.Len() == 0 && err == nil && p.HoldUntil.IsZero()
	})
	time.Sleep(time.Second) // the interval
	c2 := dialRaw(t, f)
	c2.send(t, pollRequest(id))
	resp, _ := c2.read(t)
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, tokensOf(id)) {
		t.Fatalf("the next poll got %d %s, want the tokens", resp.StatusCode, body)
	}
}

// TestParkedPollClientGoneRepoll: a client whose connection closed while
// its poll was parked, and which polls again from a new connection after
// the interval, is held again, not answered slow_down for its gone poll's
// hold (net/http's path released the hold at the disconnect).
func TestParkedPollClientGoneRepoll(t *testing.T) {
	f := newParkFixture(t, 30*time.Second, true, false, false)
	id := f.create(t)
	c := dialRaw(t, f)
	c.send(t, pollRequest(id))
	waitFor(t, "the poll to be parked", func() bool { return f.pk.Len() == 1 })
	c.Close()
	time.Sleep(1100 * time.Millisecond) // the interval
	c2 := dialRaw(t, f)
	c2.send(t, pollRequest(id))
	got := make(chan *http.Response, 1)
	go func() {
		_ = c2.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(c2.br, nil)
		if err != nil {
			close(got)
			return
		}
		got <- resp
	}()
	select {
	case resp := <-got:
		t.Fatalf("the new poll was answered at once: %v %s", resp.StatusCode, errorOf(resp))
	case <-time.After(300 * time.Millisecond):
	}
	if f.pk.Len() != 1 {
		t.Fatalf("%d polls parked, want the new one", f.pk.Len())
	}
	f.approve(t, id)
	resp := <-got
	if resp == nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("the new poll: %v", resp)
	}
}

// TestParkedPollsShutdown: a graceful shutdown answers the parked polls at
// once (authorization_pending, Connection: close) and closes their
// connections; Wait returns once all are answered.
func TestParkedPollsShutdown(t *testing.T) {
	f := newParkFixture(t, 30*time.Second, true, false, false)
	var conns []*rawConn
	for range 3 {
		c := dialRaw(t, f)
		c.send(t, pollRequest(f.create(t)))
		conns = append(conns, c)
	}
	waitFor(t, "the polls to be parked", func() bool { return f.pk.Len() == 3 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.ts.Config.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := f.pk.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	for i, c := range conns {
		resp, _ := c.read(t)
		if resp.StatusCode != http.StatusBadRequest || errorOf(resp) != "authorization_pending" || !resp.Close {
			t.Fatalf("poll %d: %d close=%v", i, resp.StatusCode, resp.Close)
		}
		if _, err := c.br.ReadByte(); err != io.EOF {
			t.Fatalf("poll %d: connection not closed after the answer: %v", i, err)
		}
	}
}

// TestParkedPollPipelinedFallsBack: a poll followed on its connection by
// the next request before its answer (pipelining) is held as without
// parking, answered first, and the next request is served after it.
func TestParkedPollPipelinedFallsBack(t *testing.T) {
	f := newParkFixture(t, 30*time.Second, true, false, false)
	id := f.create(t)
	c := dialRaw(t, f)
	c.send(t, pollRequest(id)+"GET /healthz HTTP/1.1\r\nHost: ciba.example\r\n\r\n")
	waitFor(t, "the poll to be held", func() bool {
		p, err := f.st.UpdatePace(context.Background(), id, func(*ciba.Pace) error { return nil })
		return err == nil && !p.HoldUntil.IsZero()
	})
	if f.pk.Len() != 0 {
		t.Fatal("a pipelined poll was parked")
	}
	f.approve(t, id)
	resp, _ := c.read(t)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("poll: %d", resp.StatusCode)
	}
	resp, _ = c.read(t)
	if resp.StatusCode != http.StatusOK || !strings.Contains(fmt.Sprint(readAll(resp)), "ok") {
		t.Fatalf("the pipelined request: %d", resp.StatusCode)
	}
}

func readAll(resp *http.Response) string {
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestParkedPollTLSAndHTTP2: over TLS with HTTP/1.1 the poll is parked,
// answered, and its connection closed after the answer (Connection:
// close), the next request coming on a new one; over HTTP/2 the poll is
// held by net/http as before, on the same connection.
func TestParkedPollTLSAndHTTP2(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) {
			f := newParkFixture(t, 30*time.Second, true, true, h2)
			hc := f.ts.Client()
			id := f.create(t)
			poll := func() (*http.Response, bool) {
				form := url.Values{"grant_type": {GrantCIBA}, "auth_req_id": {id}}
				req, _ := http.NewRequest(http.MethodPost, f.ts.URL+PathToken, strings.NewReader(form.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.SetBasicAuth(bank.ID, "bank-secret")
				reused := false
				req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
					GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}))
				resp, err := hc.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				return resp, reused
			}
			got := make(chan *http.Response, 1)
			go func() { resp, _ := poll(); got <- resp }()
			waitFor(t, "the poll to be held", func() bool {
				p, err := f.st.UpdatePace(context.Background(), id, func(*ciba.Pace) error { return nil })
				return err == nil && !p.HoldUntil.IsZero()
			})
			if !h2 {
				waitFor(t, "the poll to be parked", func() bool { return f.pk.Len() == 1 })
			} else if parked := f.pk.Len(); parked != 0 {
				t.Fatalf("%d HTTP/2 polls parked", parked)
			}
			f.approve(t, id)
			resp := <-got
			if resp.StatusCode != http.StatusOK || (resp.ProtoMajor == 2) != h2 {
				t.Fatalf("poll: %d %s", resp.StatusCode, resp.Proto)
			}
			readAll(resp)
			resp.Body.Close()
			resp, reused := poll()
			readAll(resp)
			resp.Body.Close()
			// HTTP/2 keeps its connection; a parked TLS connection is
			// closed after the answer (Parking.answer).
			if resp.StatusCode != http.StatusBadRequest || reused != h2 {
				t.Fatalf("second request: %d, connection reused %v", resp.StatusCode, reused)
			}
			if resp.TLS == nil {
				t.Fatal("second request not over TLS")
			}
		})
	}
}

// TestParkedPollsBurst: 500 parked polls whose requests are all approved
// at once each get exactly their own tokens (run with -race).
func TestParkedPollsBurst(t *testing.T) {
	const n = 500
	f := newParkFixture(t, 30*time.Second, true, false, false)
	ids := make([]string, n)
	conns := make([]*rawConn, n)
	for i := range n {
		ids[i] = f.create(t)
		conns[i] = dialRaw(t, f)
		conns[i].send(t, pollRequest(ids[i]))
	}
	waitFor(t, "the polls to be parked", func() bool { return f.pk.Len() == n })
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Go(func() { f.approve(t, id) })
	}
	wg.Wait()
	errs := make(chan error, n)
	for i, c := range conns {
		wg.Go(func() {
			_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
			resp, err := http.ReadResponse(c.br, nil)
			if err != nil {
				errs <- err
				return
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK || !bytes.Equal(body, tokensOf(ids[i])) {
				errs <- fmt.Errorf("poll %d: %d %s", i, resp.StatusCode, body)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
