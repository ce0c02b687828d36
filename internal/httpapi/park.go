package httpapi

import (
	"bytes"
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// Parking holds long polls without net/http: once a CIBA poll has passed
// authentication, its DPoP and certificate checks and pacing and is to be
// held, its HTTP/1.1 connection is taken from net/http (http.Hijacker),
// which frees the connection's bufio buffers and its goroutines, and the
// bare connection is parked here with one timer for the hold's end and a
// function subscription to the request's changes: no goroutine per held
// poll. When the request leaves pending, the hold ends or the holds are
// released (shutdown), the answer is written to the connection, byte for
// byte what net/http would have written but for the Date, and a plain
// connection goes back to net/http through Serve's listener, which the
// same http.Server serves, for the client's next request (keep-alive); a
// TLS connection is closed after the answer (Connection: close), see
// answer.
//
// A client that closes its connection while parked is noticed when its
// poll is answered: the connection is then found closed before the
// request is read (peerClosed), and the tokens of an approved request are
// not handed out but left for the client's next poll. The count of parked
// polls is bounded (Max); beyond it polls are held the usual way.
//
// A Parking serves one http.Server; the zero Parking is not usable: use
// NewParking.
type Parking struct {
	// Max bounds the parked polls; polls beyond it are held by net/http's
	// goroutine as without a Parking.
	Max int
	// WriteTimeout is the http.Server's: the answer of a parked poll must
	// be written by the request's start plus this (0: no limit), as
	// net/http bounds every answer.
	WriteTimeout time.Duration
	// IdleTimeout is the http.Server's idle timeout (its IdleTimeout, or
	// ReadTimeout when that is 0): how long a connection given back waits
	// for its next request, as a kept-alive one waits (0: no stretch, the
	// header timeout of a new connection applies).
	IdleTimeout time.Duration

	ln      *connQueue
	serving atomic.Bool
	mu      sync.Mutex
	parked  map[*parkedPoll]struct{}
	// byID is the parked poll of each request id, for reclaim.
	byID    map[string]*parkedPoll
	count   atomic.Int64 // len(parked), read without the lock
	closing bool
	// active counts the polls taken from net/http and not yet answered.
	active sync.WaitGroup
}

// NewParking returns a Parking of at most max parked polls for a server
// whose WriteTimeout is writeTimeout.
func NewParking(max int, writeTimeout time.Duration) *Parking {
	return &Parking{Max: max, WriteTimeout: writeTimeout, ln: newConnQueue(), parked: make(map[*parkedPoll]struct{}), byID: make(map[string]*parkedPoll)}
}

// Serve serves the connections of answered parked polls on srv, the server
// whose handler parks them, until srv shuts down (http.Server.Serve's
// error). Polls are parked only while it runs.
func (p *Parking) Serve(srv *http.Server) error {
	p.serving.Store(true)
	defer p.serving.Store(false)
	return srv.Serve(p.ln)
}

// Release answers every parked poll at once (authorization_pending, or the
// result if it just landed) and closes its connection after the answer;
// later polls are not parked. It is for a shutdown: register it with
// http.Server.RegisterOnShutdown, and call Wait after Shutdown. Calls
// after the first do nothing.
func (p *Parking) Release() {
	p.mu.Lock()
	if p.closing {
		p.mu.Unlock()
		return
	}
	p.closing = true
	list := make([]*parkedPoll, 0, len(p.parked))
	for e := range p.parked {
		list = append(list, e)
	}
	p.mu.Unlock()
	for _, e := range list {
		go e.end()
	}
}

// Wait releases the parked polls (Release, if not done yet) and waits
// until every poll taken from net/http has been answered, or ctx is done.
func (p *Parking) Wait(ctx context.Context) error {
	// Released first: no poll is taken once Wait waits.
	p.Release()
	done := make(chan struct{})
	go func() { p.active.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Len returns how many polls are parked.
func (p *Parking) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.parked)
}

// admit reserves a place for a poll to park, unless the Parking is full,
// closing or not served.
func (p *Parking) admit() bool {
	if p == nil || !p.serving.Load() {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closing || len(p.parked) >= p.Max {
		return false
	}
	p.active.Add(1)
	return true
}

// add registers a parked poll; false when the Parking is closing (the
// poll is then answered at once).
func (p *Parking) add(e *parkedPoll) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closing {
		return false
	}
	p.parked[e] = struct{}{}
	p.byID[e.hold.RequestID()] = e
	p.count.Store(int64(len(p.parked)))
	return true
}

// remove unregisters a parked poll.
func (p *Parking) remove(e *parkedPoll) {
	p.mu.Lock()
	delete(p.parked, e)
	if id := e.hold.RequestID(); p.byID[id] == e {
		delete(p.byID, id)
	}
	p.count.Store(int64(len(p.parked)))
	p.mu.Unlock()
}

// reclaim ends the parked poll of request id if its client has closed its
// connection, before a new poll of id is paced: the hold is released as
// net/http's path released it when the client went away, so a client that
// reconnects is not answered slow_down for the gone poll's hold. It costs
// an atomic load while nothing is parked, and a map lookup otherwise.
func (p *Parking) reclaim(id string) {
	if p == nil || p.count.Load() == 0 {
		return
	}
	p.mu.Lock()
	e := p.byID[id]
	p.mu.Unlock()
	if e != nil && peerClosed(e.conn) {
		e.end()
	}
}

// isClosing reports whether the Parking is releasing its polls.
func (p *Parking) isClosing() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closing
}

// The states of a parked poll.
const (
	parkIdle     int32 = iota // parked, waiting
	parkChecking              // its request is being read
	parkAgain                 // being read, and changed since: read again
	parkDone                  // being answered, or answered
)

// parkedPoll is one held poll whose connection is parked.
type parkedPoll struct {
	s    *Server
	pk   *Parking
	conn net.Conn
	hold *ciba.Hold
	// ctx carries the request's values (its id, for the logs), not its
	// cancellation, which net/http ends when the connection is taken.
	ctx context.Context
	// header holds the headers set before the hold (X-Request-Id,
	// DPoP-Nonce …); the answer adds its own.
	header http.Header
	// pipelined holds bytes of the client's next requests that net/http
	// had read ahead; the poll is then held on the handler's goroutine.
	pipelined []byte
	obs       observed
	state     atomic.Int32

	mu    sync.Mutex // guards stop and timer, set once parked
	stop  func()
	timer *time.Timer
}

// park takes the connection of the poll h from net/http and parks it
// (Parking). It returns false, with nothing done, when the poll is to be
// held the usual way: no Parking, not HTTP/1.1, a request asking to close
// the connection, a store that cannot call back, a full Parking, or a
// ResponseWriter that cannot be hijacked (HTTP/2).
func (s *Server) park(w http.ResponseWriter, r *http.Request, h *ciba.Hold) bool {
	if s.Parking == nil || r.ProtoMajor != 1 || r.ProtoMinor != 1 || r.Close {
		return false
	}
	x, ok := w.(*exchange)
	if !ok {
		return false
	}
	if !h.CanWatch() {
		return false
	}
	pk := s.Parking
	if !pk.admit() {
		return false
	}
	header := w.Header().Clone()
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		pk.active.Done()
		return false
	}
	x.status = statusHijacked
	e := &parkedPoll{s: s, pk: pk, conn: conn, hold: h, ctx: context.WithoutCancel(r.Context()), header: header, obs: x.observed(r)}
	if pk.WriteTimeout > 0 {
		// Hijack cleared the deadline net/http had set at the request's
		// start; the answer keeps to it.
		_ = conn.SetWriteDeadline(e.obs.start.Add(pk.WriteTimeout))
	}
	if n := rw.Reader.Buffered(); n > 0 {
		// The client sent its next requests without waiting (pipelining):
		// they must be served after this answer, from the bytes read
		// ahead. Held here, on the handler's goroutine, as without a
		// Parking.
		e.pipelined, _ = rw.Reader.Peek(n)
		e.pipelined = bytes.Clone(e.pipelined)
		e.state.Store(parkDone)
		body, err := h.Wait(e.ctx)
		e.answer(body, err)
		return true
	}
	if !pk.add(e) {
		e.state.Store(parkDone)
		e.finish()
		return true
	}
	e.state.Store(parkChecking)
	e.mu.Lock()
	e.stop, _ = h.Watch(e.wake)
	e.timer = time.AfterFunc(h.Duration(), e.end)
	e.mu.Unlock()
	// Read after subscribing, so no change is missed; on this goroutine,
	// which exists anyway.
	e.check()
	return true
}

// wake is called by the store on each change of the request, with its
// subscribers locked: it only starts a read of the request, on a goroutine
// of its own, or asks the running one to read again.
func (e *parkedPoll) wake() {
	for {
		switch st := e.state.Load(); st {
		case parkDone, parkAgain:
			return
		case parkChecking:
			if e.state.CompareAndSwap(parkChecking, parkAgain) {
				return
			}
		case parkIdle:
			if e.state.CompareAndSwap(parkIdle, parkChecking) {
				go e.check()
				return
			}
		}
	}
}

// check reads the request until it is read with no change in between:
// the poll is answered once it is no longer pending.
func (e *parkedPoll) check() {
	for {
		pending, err := e.hold.Pending(e.ctx)
		if err != nil || !pending {
			e.end()
			return
		}
		if e.state.CompareAndSwap(parkChecking, parkIdle) {
			return
		}
		if !e.state.CompareAndSwap(parkAgain, parkChecking) {
			return // answered meanwhile
		}
	}
}

// end answers the poll, once: when its request left pending, its hold
// ended or the Parking is released.
func (e *parkedPoll) end() {
	if e.state.Swap(parkDone) == parkDone {
		return
	}
	e.finish()
}

// finish stops the hold's timer and subscription and answers the poll on
// its connection, unless the client has gone.
func (e *parkedPoll) finish() {
	e.mu.Lock()
	stop, timer := e.stop, e.timer
	e.mu.Unlock()
	if stop != nil {
		stop()
	}
	if timer != nil {
		timer.Stop()
	}
	e.pk.remove(e)
	if peerClosed(e.conn) {
		// Checked before the request is read: the tokens of an approved
		// request stay for the client's next poll.
		e.hold.Abandon(e.ctx)
		_ = e.conn.Close()
		e.pk.active.Done()
		e.s.Logger.DebugContext(e.ctx, "held poll: the client closed its connection")
		return
	}
	body, err := e.hold.Answer(e.ctx)
	e.answer(body, err)
}

// answer writes the poll's answer to the connection, reports it as
// observe does, and gives the connection back to net/http (or closes it,
// when the server is shutting down or the write failed).
func (e *parkedPoll) answer(body []byte, err error) {
	defer e.pk.active.Done()
	rec := &recorder{header: e.header}
	x := &exchange{ResponseWriter: rec, client: e.obs.client}
	e.s.writePoll(x, body, err)
	closing := e.pk.isClosing()
	// A TLS connection is closed after the answer: net/http would serve
	// it as a new connection, whose next request must come within the
	// header timeout, not the idle timeout a kept-alive one has (a
	// *tls.Conn cannot be wrapped to stretch it, returnedConn), and a
	// client waiting its interval would find it closed under its request.
	tlsConn := isTLS(e.conn)
	out := appendResponse(nil, x.status, rec.header, rec.body.Bytes(), time.Now(), closing || tlsConn)
	_, werr := e.conn.Write(out)
	e.s.report(e.ctx, e.obs, x)
	switch {
	case werr != nil:
		_ = e.conn.Close()
		if body != nil {
			e.s.Logger.WarnContext(e.ctx, "held poll: the answer with the tokens could not be written", slog.Any("error", werr))
		}
	case closing || tlsConn:
		_ = e.conn.Close()
	default:
		_ = e.conn.SetDeadline(time.Time{})
		c := &returnedConn{Conn: e.conn, prefix: e.pipelined, idle: e.pk.IdleTimeout}
		if !e.pk.ln.put(c) {
			_ = c.Close()
		}
	}
}

// writePoll writes the answer of a CIBA poll: the token response, or the
// error (with Retry-After for slow_down). Both the held poll's paths use
// it, so the answer is the same whichever holds it.
func (s *Server) writePoll(w http.ResponseWriter, body []byte, err error) {
	if err != nil {
		// A slow_down says the client's interval now in Retry-After
		// (Auth0-style clients wait what it says); the value is the
		// shared error's, allocated once.
		if e := ciba.AsError(err); e.Code == ciba.CodeSlowDown {
			if v := e.RetryAfterHeader(); v != nil {
				w.Header()["Retry-After"] = v
			}
		}
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, body)
}

// recorder is the ResponseWriter a parked poll's answer is written to
// before it goes to the connection.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}

// appendResponse appends the HTTP/1.1 response net/http writes for a
// handler that set the headers h (Content-Length among them) and wrote
// body: the status line, the headers in net/http's order (sorted, then
// Connection: close when the connection is to be closed, then Date), and
// the body.
func appendResponse(b []byte, status int, h http.Header, body []byte, now time.Time, closeConn bool) []byte {
	if status == 0 {
		status = http.StatusOK
	}
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(status)...)
	b = append(b, "\r\n"...)
	buf := bytes.NewBuffer(b)
	_ = h.Write(buf)
	b = buf.Bytes()
	if closeConn && h.Get("Connection") == "" {
		b = append(b, "Connection: close\r\n"...)
	}
	if _, ok := h["Date"]; !ok {
		b = append(b, "Date: "...)
		b = now.UTC().AppendFormat(b, http.TimeFormat)
		b = append(b, "\r\n"...)
	}
	b = append(b, "\r\n"...)
	return append(b, body...)
}

// isTLS reports whether c is a TLS connection.
func isTLS(c net.Conn) bool {
	_, ok := c.(*tls.Conn)
	return ok
}

// returnedConn is a plain connection given back to net/http, which serves
// it as a new one. Its first bytes may have been read ahead (pipelining):
// they are read again first. And the first read deadline net/http sets,
// the header timeout of a new connection, is stretched to the idle timeout
// a kept-alive connection has for its next request, so a client that
// waits its poll interval before polling again on the connection finds it
// open, as without parking. (A TLS connection cannot be wrapped: net/http
// must see the *tls.Conn; it is closed after the answer instead.)
type returnedConn struct {
	net.Conn
	prefix    []byte
	idle      time.Duration
	stretched bool
}

func (c *returnedConn) Read(b []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(b, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

func (c *returnedConn) SetReadDeadline(t time.Time) error {
	if !c.stretched && !t.IsZero() {
		c.stretched = true
		if idle := time.Now().Add(c.idle); len(c.prefix) == 0 && idle.After(t) {
			t = idle
		}
	}
	return c.Conn.SetReadDeadline(t)
}

// connQueue is a net.Listener whose connections are those put to it: the
// connections of answered parked polls, back to net/http.
type connQueue struct {
	ch     chan net.Conn
	done   chan struct{}
	closed sync.Once
}

func newConnQueue() *connQueue {
	return &connQueue{ch: make(chan net.Conn, 256), done: make(chan struct{})}
}

// put hands c to Accept; false once the listener is closed.
func (q *connQueue) put(c net.Conn) bool {
	select {
	case <-q.done:
		return false
	default:
	}
	select {
	case q.ch <- c:
		return true
	case <-q.done:
		return false
	}
}

// Accept returns the next connection put, or net.ErrClosed once closed.
func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

// Close closes the listener; connections put and not accepted are closed.
func (q *connQueue) Close() error {
	q.closed.Do(func() {
		close(q.done)
		for {
			select {
			case c := <-q.ch:
				_ = c.Close()
			default:
				return
			}
		}
	})
	return nil
}

// Addr is a placeholder address: the connections come from the real
// listener.
func (q *connQueue) Addr() net.Addr { return parkAddr{} }

type parkAddr struct{}

func (parkAddr) Network() string { return "parked" }
func (parkAddr) String() string  { return "parked long polls" }
