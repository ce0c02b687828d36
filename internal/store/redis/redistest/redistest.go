// Package redistest runs a real redis-server for tests: on 127.0.0.1, on a
// free port, in a temporary directory, stopped when the test ends. Tests can
// stop, kill and restart it to see what their code does when Redis goes
// away and comes back.
//
// The binary is $REDIS_SERVER if set (a path or a name on PATH, for
// instance valkey-server), else redis-server, else valkey-server. When none
// is found the test is skipped, unless the environment variable CI is set:
// CI installs Redis, so there its absence fails the test.
package redistest

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"github.com/cibaproxy/cibaproxy/internal/testport"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Limits of the waits. They turn a hang into a failure; a working server
// answers far sooner.
const (
	readyTimeout = 20 * time.Second
	stopTimeout  = 10 * time.Second
	pollEvery    = 10 * time.Millisecond
	// startTries bounds the attempts to start on a fresh free port, in case
	// a process that does not reserve its ports (testport.Free reserves
	// them against the other test binaries) took the port between the
	// probe and the server's bind.
	startTries = 3
)

// Option configures Start.
type Option func(*options)

type options struct {
	persistent bool
	args       []string
	tls        *tlsFiles
	// conf, when set, is written to the server's directory as redis.conf
	// and given as the first argument (Sentinel needs a configuration
	// file it can rewrite).
	conf string
	// freePort chooses the port; testport.Free unless a test of this
	// package sets it.
	freePort func() (int, error)
}

// tlsFiles are the PEM files of WithTLS.
type tlsFiles struct{ cert, key, ca string }

// WithPersistence turns on the append-only file with an fsync per write
// (appendonly yes, appendfsync always), so that data written before Kill or
// Stop is back after Restart. Without it the server keeps nothing on disk.
func WithPersistence() Option {
	return func(o *options) { o.persistent = true }
}

// WithTLS makes the server accept only TLS connections on its port, with
// certFile and keyFile (PEM) as its certificate, and require a client
// certificate signed by a CA in caFile (PEM). The certificate must be valid
// for the IP address 127.0.0.1 and for client authentication too (extended
// key usages serverAuth and clientAuth): the readiness check presents it.
func WithTLS(certFile, keyFile, caFile string) Option {
	return func(o *options) { o.tls = &tlsFiles{cert: certFile, key: keyFile, ca: caFile} }
}

// WithArgs adds redis-server command-line arguments, for instance
// "--requirepass", "secret".
func WithArgs(args ...string) Option {
	return func(o *options) { o.args = append(o.args, args...) }
}

// Server is a redis-server process started by Start. Its methods may be
// called from any goroutine.
type Server struct {
	t    testing.TB
	bin  string
	dir  string
	port int
	args []string
	// conf is the configuration file given first, if any.
	conf string
	// tls, when set, is the client configuration of the readiness check.
	tls *tls.Config

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
}

// Binary returns the redis-server binary to use, or "" if there is none.
func Binary() string {
	if b := os.Getenv("REDIS_SERVER"); b != "" {
		if p, err := exec.LookPath(b); err == nil {
			return p
		}
		return ""
	}
	for _, name := range []string{"redis-server", "valkey-server"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// Start runs a server and waits until it answers PING; the server is killed
// when the test ends. It skips the test when no binary is found and CI is
// unset, and fails it when CI is set.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	bin := Binary()
	if bin == "" {
		if os.Getenv("CI") == "" {
			t.Skip("redistest: no redis-server on PATH (set REDIS_SERVER, or install Redis or Valkey)")
		}
		t.Fatal("redistest: no redis-server on PATH, and CI is set: CI must install it")
	}
	o := options{freePort: freePort}
	for _, opt := range opts {
		opt(&o)
	}
	s := &Server{t: t, bin: bin, dir: t.TempDir()}
	s.args = []string{
		"--bind", "127.0.0.1",
		"--dir", s.dir,
		"--save", "",
		"--logfile", "",
		"--daemonize", "no",
	}
	if o.persistent {
		s.args = append(s.args, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		s.args = append(s.args, "--appendonly", "no")
	}
	if o.tls != nil {
		s.args = append(s.args,
			"--tls-cert-file", o.tls.cert, "--tls-key-file", o.tls.key,
			"--tls-ca-cert-file", o.tls.ca, "--tls-auth-clients", "yes")
		var err error
		if s.tls, err = probeTLS(o.tls); err != nil {
			t.Fatalf("redistest: %v", err)
		}
	}
	s.args = append(s.args, o.args...)
	if o.conf != "" {
		s.conf = filepath.Join(s.dir, "redis.conf")
		if err := os.WriteFile(s.conf, []byte(o.conf), 0o600); err != nil {
			t.Fatalf("redistest: write the configuration file: %v", err)
		}
	}
	t.Cleanup(s.Kill)

	var err error
	for range startTries {
		s.port, err = o.freePort()
		if err != nil {
			t.Fatalf("redistest: %v", err)
		}
		if err = s.start(); err == nil {
			return s
		}
	}
	t.Fatalf("redistest: %v", err)
	return nil
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago and
// is reserved for this test binary (testport.Free).
func freePort() (int, error) { return testport.Free() }

// Addr returns the server's host:port.
func (s *Server) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// Dir returns the server's working directory, where its files are.
func (s *Server) Dir() string { return s.dir }

// start runs the server on s.port and waits until it answers PING.
func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("the server is already running")
	}
	log, err := os.OpenFile(filepath.Join(s.dir, "redis.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("open the log: %w", err)
	}
	port := []string{"--port", strconv.Itoa(s.port)}
	if s.tls != nil {
		port = []string{"--port", "0", "--tls-port", strconv.Itoa(s.port)}
	}
	args := append(port, s.args...)
	if s.conf != "" {
		args = append([]string{s.conf}, args...)
	}
	cmd := exec.Command(s.bin, args...)
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		_ = log.Close()
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait() // exit status does not matter: Stop and Kill end it
		_ = log.Close()
		close(exited)
	}()
	if err := waitReady(s.Addr(), s.tls, exited); err != nil {
		_ = cmd.Process.Kill()
		<-exited
		return fmt.Errorf("%s on %s: %w\n%s", s.bin, s.Addr(), err, s.logTail())
	}
	s.cmd, s.exited = cmd, exited
	return nil
}

// waitReady polls addr with PING until it answers PONG (not LOADING), the
// process exits, or readyTimeout passes.
func waitReady(addr string, tlsCfg *tls.Config, exited <-chan struct{}) error {
	deadline := time.Now().Add(readyTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("the server exited during start-up")
		default:
		}
		if ping(addr, tlsCfg) == nil {
			return nil
		}
		time.Sleep(pollEvery)
	}
	return fmt.Errorf("no PONG within %v", readyTimeout)
}

// ping sends one PING in the inline protocol and expects +PONG, or NOAUTH
// from a server that requires a password: either way it serves (a loading
// server answers LOADING).
func ping(addr string, tlsCfg *tls.Config) error {
	d := &net.Dialer{Timeout: time.Second}
	var c net.Conn
	var err error
	if tlsCfg != nil {
		c, err = tls.DialWithDialer(d, "tcp", addr, tlsCfg)
	} else {
		c, err = d.Dial("tcp", addr)
	}
	if err != nil {
		return err
	}
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line = strings.TrimSpace(line); line != "+PONG" && !strings.HasPrefix(line, "-NOAUTH") {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

// probeTLS returns the client configuration of the readiness check.
func probeTLS(f *tlsFiles) (*tls.Config, error) {
	pem, err := os.ReadFile(f.ca)
	if err != nil {
		return nil, fmt.Errorf("TLS: read the CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("TLS: %s holds no PEM certificate", f.ca)
	}
	cert, err := tls.LoadX509KeyPair(f.cert, f.key)
	if err != nil {
		return nil, fmt.Errorf("TLS: load the certificate: %w", err)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		RootCAs:      pool,
		ServerName:   "127.0.0.1",
		Certificates: []tls.Certificate{cert},
	}, nil
}

// logTail returns the end of the server's log, for failure messages.
func (s *Server) logTail() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(bytes.TrimSpace(b))
}

// Stop shuts the server down gracefully (SIGTERM; Redis then writes what
// persistence asks for) and waits until it exited. It does nothing if the
// server is not running.
func (s *Server) Stop() { s.signal(syscall.SIGTERM) }

// Kill kills the server (SIGKILL: no shutdown work) and waits until it
// exited. It does nothing if the server is not running.
func (s *Server) Kill() { s.signal(syscall.SIGKILL) }

// signal sends sig and waits for the exit; SIGKILL follows a SIGTERM that
// did not end the server within stopTimeout.
func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(sig) // fails only if it already exited
	select {
	case <-s.exited:
	case <-time.After(stopTimeout):
		_ = s.cmd.Process.Kill()
		<-s.exited
		if sig != syscall.SIGKILL {
			s.t.Errorf("redistest: %s did not stop on %v within %v; killed", s.bin, sig, stopTimeout)
		}
	}
	s.cmd, s.exited = nil, nil
}

// Restart starts the stopped or killed server again on the same port and in
// the same directory (so a persistent server has its data back) and waits
// until it answers PING. A running server is killed first.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	if err := s.start(); err != nil {
		s.t.Fatalf("redistest: restart: %v", err)
	}
}
