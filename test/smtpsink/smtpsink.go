// Package smtpsink is a small SMTP server for tests (RFC 5321). It listens on
// a loopback port, speaks EHLO/HELO, STARTTLS (RFC 3207), implicit TLS
// (RFC 8314), AUTH PLAIN (RFC 4616), MAIL, RCPT, DATA, RSET, NOOP and QUIT,
// and keeps every accepted message in memory for the test to inspect.
//
// It is strict where a test needs it (AUTH only over TLS when TLS is
// configured, authentication required before MAIL when users are set) and
// bounded everywhere: line length, message size, recipients, commands per
// connection and the lifetime of a connection.
package smtpsink

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/big"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"
)

// Limits of the sink. They are generous for tests and keep every loop and
// buffer bounded.
const (
	// MaxLine is the longest line accepted, CRLF included (RFC 5321
	// §4.5.3.1.6 allows 1000 octets; the rest is slack).
	MaxLine = 1024
	// MaxMessage is the largest message accepted by DATA, in octets.
	MaxMessage = 1 << 20
	// maxRecipients is the most RCPT commands in one transaction.
	maxRecipients = 100
	// maxCommands is the most commands in one connection.
	maxCommands = 1000
	// connLifetime bounds how long one connection may stay open.
	connLifetime = 2 * time.Minute
)

// Options configure a Sink.
type Options struct {
	// TLS is the server's TLS configuration. When set and ImplicitTLS is
	// false, the sink offers STARTTLS; see SelfSigned for one.
	TLS *tls.Config
	// ImplicitTLS makes the sink speak TLS from the first byte (the
	// "submissions" port 465 style). It needs TLS.
	ImplicitTLS bool
	// Users maps user names to passwords. When set, AUTH PLAIN is offered
	// (over TLS only, when TLS is configured) and required before MAIL.
	Users map[string]string
	// FailNext is the number of DATA transactions to answer with
	// "451 4.3.0" after the message was received, instead of accepting it,
	// to test a sender's retries.
	FailNext int
}

// Message is one message the sink accepted.
type Message struct {
	// From is the envelope sender (MAIL FROM).
	From string
	// To are the envelope recipients (RCPT TO).
	To []string
	// Data is the message as received, dot-unstuffed, with CRLF line ends.
	Data []byte
	// Header is the parsed header of Data; nil when Data is not a message.
	Header mail.Header
	// Body is the body of Data decoded from its Content-Transfer-Encoding
	// (quoted-printable or base64; anything else as is).
	Body string
}

// Sink is a running SMTP server. It stops when the test ends.
type Sink struct {
	ln   net.Listener
	opts Options

	wg sync.WaitGroup

	mu       sync.Mutex
	msgs     []Message
	waited   int           // messages already returned by WaitMessage
	arrived  chan struct{} // closed and replaced when a message arrives
	failNext int
	conns    map[net.Conn]struct{}
	closed   bool
}

// Start starts a sink on 127.0.0.1 on a free port. It is stopped by
// t.Cleanup, which also closes the connections still open.
func Start(t testing.TB, opts Options) *Sink {
	t.Helper()
	if opts.ImplicitTLS && opts.TLS == nil {
		t.Fatal("smtpsink: ImplicitTLS needs Options.TLS")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("smtpsink: listen: %v", err)
	}
	if opts.ImplicitTLS {
		ln = tls.NewListener(ln, opts.TLS)
	}
	users := make(map[string]string, len(opts.Users))
	for u, p := range opts.Users {
		users[u] = p
	}
	opts.Users = users
	s := &Sink{
		ln:       ln,
		opts:     opts,
		arrived:  make(chan struct{}),
		failNext: opts.FailNext,
		conns:    make(map[net.Conn]struct{}),
	}
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(s.close)
	return s
}

// Addr is the sink's address, "127.0.0.1:port".
func (s *Sink) Addr() string { return s.ln.Addr().String() }

// Host is the sink's host, "127.0.0.1".
func (s *Sink) Host() string { return s.ln.Addr().(*net.TCPAddr).IP.String() }

// Port is the sink's port.
func (s *Sink) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// Messages returns the messages accepted so far, oldest first. The callers
// must not modify the slices in them.
func (s *Sink) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// WaitMessage returns the oldest accepted message not yet returned by
// WaitMessage, waiting for one to arrive until ctx is done.
func (s *Sink) WaitMessage(ctx context.Context) (Message, error) {
	for {
		s.mu.Lock()
		if s.waited < len(s.msgs) {
			m := s.msgs[s.waited]
			s.waited++
			s.mu.Unlock()
			return m, nil
		}
		arrived := s.arrived
		s.mu.Unlock()
		select {
		case <-arrived:
		case <-ctx.Done():
			return Message{}, fmt.Errorf("smtpsink: waiting for a message: %w", ctx.Err())
		}
	}
}

func (s *Sink) serve() {
	defer s.wg.Done()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return // closed by close
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			conn.Close()
			return
		}
		s.conns[conn] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.handle(conn)
			s.mu.Lock()
			delete(s.conns, conn)
			s.mu.Unlock()
		}()
	}
}

func (s *Sink) close() {
	s.mu.Lock()
	s.closed = true
	s.ln.Close()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// store keeps an accepted message, or reports false when it must be answered
// with a temporary failure (Options.FailNext).
func (s *Sink) store(m Message) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failNext > 0 {
		s.failNext--
		return false
	}
	s.msgs = append(s.msgs, m)
	close(s.arrived)
	s.arrived = make(chan struct{})
	return true
}

// session is the state of one connection.
type session struct {
	s     *Sink
	conn  net.Conn
	r     *bufio.Reader
	isTLS bool

	greeted bool
	authed  bool
	hasFrom bool
	from    string
	to      []string
}

var errLineTooLong = errors.New("line too long")

func (s *Sink) handle(conn net.Conn) {
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(connLifetime)); err != nil {
		return
	}
	_, isTLS := conn.(*tls.Conn)
	ss := &session{s: s, conn: conn, r: bufio.NewReaderSize(conn, MaxLine), isTLS: isTLS}
	if !ss.reply(220, "127.0.0.1 smtpsink ESMTP ready") {
		return
	}
	for range maxCommands {
		line, err := ss.readLine()
		if errors.Is(err, errLineTooLong) {
			ss.reply(500, "5.5.6 line too long")
			return
		}
		if err != nil {
			return
		}
		if !ss.command(line) {
			return
		}
	}
	ss.reply(421, "4.7.0 too many commands, closing")
}

// readLine reads one line of at most MaxLine octets and strips its line end.
func (ss *session) readLine() (string, error) {
	line, err := ss.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		// Discard the rest of the line, so the reply is read before the
		// connection closes.
		for range MaxMessage / MaxLine {
			if _, err = ss.r.ReadSlice('\n'); !errors.Is(err, bufio.ErrBufferFull) {
				break
			}
		}
		return "", errLineTooLong
	}
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(strings.TrimSuffix(string(line), "\n"), "\r"), nil
}

// reply writes a reply; the last of lines gets "code SP", the others
// "code -" (RFC 5321 §4.2.1). It reports whether the write succeeded.
func (ss *session) reply(code int, lines ...string) bool {
	var b strings.Builder
	for i, l := range lines {
		sep := "-"
		if i == len(lines)-1 {
			sep = " "
		}
		fmt.Fprintf(&b, "%03d%s%s\r\n", code, sep, l)
	}
	_, err := io.WriteString(ss.conn, b.String())
	return err == nil
}

func (ss *session) resetTransaction() {
	ss.hasFrom, ss.from, ss.to = false, "", nil
}

func (ss *session) offersSTARTTLS() bool {
	return ss.s.opts.TLS != nil && !ss.isTLS
}

func (ss *session) offersAUTH() bool {
	return len(ss.s.opts.Users) > 0 && !ss.authed && (ss.isTLS || ss.s.opts.TLS == nil)
}

// command handles one command line and reports whether to go on.
func (ss *session) command(line string) bool {
	verb, arg, _ := strings.Cut(line, " ")
	switch strings.ToUpper(verb) {
	case "EHLO":
		ss.greeted = true
		ss.resetTransaction()
		lines := []string{"127.0.0.1 greets " + arg, "8BITMIME", fmt.Sprintf("SIZE %d", MaxMessage)}
		if ss.offersSTARTTLS() {
			lines = append(lines, "STARTTLS")
		}
		if ss.offersAUTH() {
			lines = append(lines, "AUTH PLAIN")
		}
		return ss.reply(250, lines...)
	case "HELO":
		ss.greeted = true
		ss.resetTransaction()
		return ss.reply(250, "127.0.0.1")
	case "STARTTLS":
		return ss.startTLS()
	case "AUTH":
		return ss.auth(arg)
	case "MAIL":
		return ss.mail(arg)
	case "RCPT":
		return ss.rcpt(arg)
	case "DATA":
		return ss.data()
	case "RSET":
		ss.resetTransaction()
		return ss.reply(250, "2.0.0 OK")
	case "NOOP":
		return ss.reply(250, "2.0.0 OK")
	case "QUIT":
		ss.reply(221, "2.0.0 bye")
		return false
	case "*": // a client cancelling an AUTH exchange it already lost
		return ss.reply(501, "5.7.0 authentication cancelled")
	default:
		return ss.reply(500, "5.5.2 command not recognized")
	}
}

func (ss *session) startTLS() bool {
	if !ss.offersSTARTTLS() {
		return ss.reply(502, "5.5.1 STARTTLS not offered")
	}
	if !ss.reply(220, "2.0.0 ready to start TLS") {
		return false
	}
	tc := tls.Server(ss.conn, ss.s.opts.TLS)
	if err := tc.Handshake(); err != nil {
		return false
	}
	// Anything the client pipelined before the handshake is discarded with
	// the old reader (RFC 3207 §4.2), and the session starts over.
	ss.conn, ss.r, ss.isTLS = tc, bufio.NewReaderSize(tc, MaxLine), true
	ss.greeted, ss.authed = false, false
	ss.resetTransaction()
	return true
}

func (ss *session) auth(arg string) bool {
	if !ss.greeted {
		return ss.reply(503, "5.5.1 EHLO first")
	}
	if !ss.offersAUTH() {
		return ss.reply(503, "5.5.1 AUTH not available")
	}
	mech, initial, hasInitial := strings.Cut(arg, " ")
	if !strings.EqualFold(mech, "PLAIN") {
		return ss.reply(504, "5.5.4 unrecognized authentication type")
	}
	if !hasInitial {
		if !ss.reply(334, "") {
			return false
		}
		line, err := ss.readLine()
		if err != nil {
			return false
		}
		initial = line
	}
	if initial == "*" {
		return ss.reply(501, "5.7.0 authentication cancelled")
	}
	raw, err := base64.StdEncoding.DecodeString(initial)
	if err != nil {
		return ss.reply(501, "5.5.2 cannot decode response")
	}
	parts := strings.Split(string(raw), "\x00")
	if len(parts) != 3 {
		return ss.reply(501, "5.5.2 malformed PLAIN response")
	}
	want, ok := ss.s.opts.Users[parts[1]]
	if !ok || want != parts[2] || (parts[0] != "" && parts[0] != parts[1]) {
		return ss.reply(535, "5.7.8 authentication credentials invalid")
	}
	ss.authed = true
	return ss.reply(235, "2.7.0 authentication succeeded")
}

// path parses "FROM:<addr> params" or "TO:<addr> params" and returns addr.
func path(arg, prefix string) (string, bool) {
	if len(arg) < len(prefix) || !strings.EqualFold(arg[:len(prefix)], prefix) {
		return "", false
	}
	rest := strings.TrimLeft(arg[len(prefix):], " ")
	if !strings.HasPrefix(rest, "<") {
		return "", false
	}
	addr, _, ok := strings.Cut(rest[1:], ">")
	return addr, ok
}

func (ss *session) mail(arg string) bool {
	switch {
	case !ss.greeted:
		return ss.reply(503, "5.5.1 EHLO first")
	case len(ss.s.opts.Users) > 0 && !ss.authed:
		return ss.reply(530, "5.7.0 authentication required")
	case ss.hasFrom:
		return ss.reply(503, "5.5.1 nested MAIL command")
	}
	from, ok := path(arg, "FROM:")
	if !ok {
		return ss.reply(501, "5.5.4 syntax: MAIL FROM:<address>")
	}
	ss.hasFrom, ss.from = true, from
	return ss.reply(250, "2.1.0 OK")
}

func (ss *session) rcpt(arg string) bool {
	if !ss.hasFrom {
		return ss.reply(503, "5.5.1 MAIL first")
	}
	to, ok := path(arg, "TO:")
	if !ok || to == "" {
		return ss.reply(501, "5.5.4 syntax: RCPT TO:<address>")
	}
	if len(ss.to) >= maxRecipients {
		return ss.reply(452, "4.5.3 too many recipients")
	}
	ss.to = append(ss.to, to)
	return ss.reply(250, "2.1.5 OK")
}

func (ss *session) data() bool {
	if !ss.hasFrom || len(ss.to) == 0 {
		return ss.reply(503, "5.5.1 RCPT first")
	}
	if !ss.reply(354, "end data with <CR><LF>.<CR><LF>") {
		return false
	}
	var buf bytes.Buffer
	for {
		line, err := ss.readLine()
		if errors.Is(err, errLineTooLong) {
			ss.reply(500, "5.5.6 line too long")
			return false
		}
		if err != nil {
			return false
		}
		if line == "." {
			break
		}
		line = strings.TrimPrefix(line, ".") // dot-unstuffing, RFC 5321 §4.5.2
		if buf.Len()+len(line)+2 > MaxMessage {
			ss.reply(552, "5.3.4 message too big")
			return false
		}
		buf.WriteString(line)
		buf.WriteString("\r\n")
	}
	m := Message{From: ss.from, To: ss.to, Data: buf.Bytes()}
	ss.resetTransaction()
	parse(&m)
	if !ss.s.store(m) {
		return ss.reply(451, "4.3.0 temporary failure, try again later")
	}
	return ss.reply(250, "2.0.0 OK queued")
}

// parse fills in Header and Body from Data.
func parse(m *Message) {
	msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
	if err != nil {
		m.Body = string(m.Data)
		return
	}
	m.Header = msg.Header
	var body io.Reader = msg.Body
	switch strings.ToLower(strings.TrimSpace(msg.Header.Get("Content-Transfer-Encoding"))) {
	case "quoted-printable":
		body = quotedprintable.NewReader(body)
	case "base64":
		body = base64.NewDecoder(base64.StdEncoding, body)
	}
	b, _ := io.ReadAll(body) // a decoding error leaves what was decoded
	m.Body = string(b)
}

// SelfSigned returns a server TLS configuration with a new self-signed
// certificate for 127.0.0.1, ::1 and localhost, and a pool holding that
// certificate for the client's RootCAs.
func SelfSigned(t testing.TB) (*tls.Config, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("smtpsink: generate key: %v", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		t.Fatalf("smtpsink: serial number: %v", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "smtpsink"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("smtpsink: create certificate: %v", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("smtpsink: parse certificate: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	cfg := &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}},
		MinVersion:   tls.VersionTLS12,
	}
	return cfg, pool
}
