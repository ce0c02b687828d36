package testutil

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/testproc"
)

// Bounds of the waits around the server process.
const (
	// StartTimeout bounds how long a start may take until /healthz answers
	// 200 (a race-enabled build starts slower).
	StartTimeout = 60 * time.Second
	// StopTimeout bounds a graceful stop before the process is killed.
	StopTimeout = 15 * time.Second
)

// EnvLogs, when set, logs the server's stderr for passing tests too.
const EnvLogs = "CIBAPROXY_TEST_LOGS"

// Options say how to run cibaproxy.
type Options struct {
	// Binary is the cibaproxy executable (required).
	Binary string
	// Config is the config file; examples/quickstart.yaml when empty.
	Config string
	// Addr is the listen address; a free 127.0.0.1 port when empty.
	Addr string
	// DataDir is $CIBAPROXY_DATA; a new t.TempDir() when empty.
	DataDir string
	// WebhookURL is $CIBAPROXY_WEBHOOK_URL, where the webhook channel posts.
	WebhookURL string
	// NotifyURL is $CIBAPROXY_DEMO_NOTIFY_URL, the demo ping/push clients'
	// notification endpoint.
	NotifyURL string
	// Env are further KEY=VALUE entries.
	Env []string
	// DefaultLimits runs the configuration's abuse limits as written. By
	// default the per-user request limit of the example configurations
	// ($CIBAPROXY_REQUESTS_PER_USER) is raised, as the functional tests
	// start many requests for one user; test/abuse sets this.
	DefaultLimits bool
	// TLS, for a configuration that serves HTTPS (tls.cert_file), is the
	// client TLS configuration trusting the server's certificate: the
	// issuer and URL become https://ADDR and /healthz is polled with it.
	TLS *tls.Config

	// freeAddr chooses the addresses Start is to choose; FreeAddr unless a
	// test of this package sets it.
	freeAddr func() (string, error)
}

// Server is one cibaproxy process (and its successors after Restart) that
// a test started. Its stderr is kept and logged when the test fails.
type Server struct {
	t    testing.TB
	opts Options
	// URL is the issuer, http://ADDR; endpoints hang off it.
	URL string
	// Addr is the listen address.
	Addr string
	// DataDir holds the embedded store.
	DataDir string
	// MetricsURL is http://ADDR of the operators' listener
	// ($CIBAPROXY_METRICS_LISTEN, which the example configurations give
	// metrics.listen): /metrics, /healthz and /readyz. A free 127.0.0.1
	// port, so parallel servers do not meet on the examples' default.
	MetricsURL string

	logs testproc.Logs

	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{} // closed when the current process has exited
	waitErr  error
	stopping bool // the test ended the current process on purpose
	starts   int
}

// startAttempts bounds the starts of Start on fresh ports when the server
// could not bind a port Start chose for it (see startFresh).
const startAttempts = 4

// Start runs cibaproxy serve with o and waits until /healthz answers 200.
// The process is stopped when the test ends, and its stderr is logged if
// the test failed.
//
// The listen and metrics addresses Start chooses (o.Addr empty, and the
// metrics address always) come from testport.Free, which reserves them
// against every other test process of this module. A program outside the
// tests may still bind one before the server does: when the server exits
// with "address already in use" on an address Start chose, it is started
// again on fresh ones, up to startAttempts times in all.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	if o.Binary == "" {
		t.Fatal("testutil.Start: Options.Binary is required")
	}
	if o.Config == "" {
		o.Config = QuickstartConfig()
	}
	if o.freeAddr == nil {
		o.freeAddr = FreeAddr
	}
	chooseAddr := o.Addr == ""
	if o.DataDir == "" {
		o.DataDir = t.TempDir()
	}
	s := &Server{t: t, opts: o, DataDir: o.DataDir}
	t.Cleanup(s.cleanup)
	for attempt := 1; ; attempt++ {
		if chooseAddr {
			addr, err := o.freeAddr()
			if err != nil {
				t.Fatalf("free port: %v", err)
			}
			s.opts.Addr = addr
		}
		maddr, err := o.freeAddr()
		if err != nil {
			t.Fatalf("free port: %v", err)
		}
		s.Addr, s.URL, s.MetricsURL = s.opts.Addr, s.opts.scheme()+"://"+s.opts.Addr, "http://"+maddr
		chosen := []string{maddr}
		if chooseAddr {
			chosen = append(chosen, s.Addr)
		}
		mark := len(s.Logs())
		err = s.start()
		if err == nil {
			return s
		}
		if attempt == startAttempts || !boundElsewhere(s.Logs()[mark:], chosen) {
			t.Fatalf("cibaproxy did not become ready: %v\n%s", err, s.Logs())
		}
		s.mu.Lock()
		running := s.cmd != nil
		s.mu.Unlock()
		if running { // it said so but did not exit: end it before the next start
			s.end(false)
		}
		fmt.Fprintf(&s.logs, "----- an address was taken before cibaproxy bound it; starting again on fresh ports\n")
	}
}

// boundElsewhere reports whether logs (of one start that failed) say that
// one of addrs was already in use.
func boundElsewhere(logs string, addrs []string) bool {
	for _, line := range strings.Split(logs, "\n") {
		if !strings.Contains(line, "address already in use") {
			continue
		}
		for _, a := range addrs {
			if strings.Contains(line, a) {
				return true
			}
		}
	}
	return false
}

func (s *Server) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CIBAPROXY_") {
			env = append(env, kv)
		}
	}
	env = append(env,
		"CIBAPROXY_ISSUER="+s.URL,
		"CIBAPROXY_DATA="+s.DataDir,
		"CIBAPROXY_WEBHOOK_URL="+s.opts.WebhookURL,
		"CIBAPROXY_DEMO_NOTIFY_URL="+s.opts.NotifyURL,
		"CIBAPROXY_METRICS_LISTEN="+strings.TrimPrefix(s.MetricsURL, "http://"),
	)
	if !s.opts.DefaultLimits {
		// The functional tests start many requests for alice;
		// examples/quickstart.yaml reads its per-user limit from here.
		env = append(env, "CIBAPROXY_REQUESTS_PER_USER=100000")
	}
	return append(env, s.opts.Env...)
}

// start runs one process and waits until /healthz answers 200; an error
// says why it did not (the process's stderr is in s.logs).
func (s *Server) start() error {
	s.mu.Lock()
	if s.cmd != nil {
		s.mu.Unlock()
		return errors.New("cibaproxy is already running")
	}
	s.starts++
	fmt.Fprintf(&s.logs, "----- cibaproxy start #%d: serve --config %s --listen %s (data %s)\n", s.starts, s.opts.Config, s.Addr, s.DataDir)
	cmd := exec.Command(s.opts.Binary, "serve", "--config", s.opts.Config, "--listen", s.Addr)
	cmd.Env = s.env()
	cmd.Stdout = &s.logs
	cmd.Stderr = &s.logs
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		s.mu.Unlock()
		return fmt.Errorf("start cibaproxy: %w", err)
	}
	done := make(chan struct{})
	s.cmd, s.done, s.waitErr, s.stopping = cmd, done, nil, false
	s.mu.Unlock()
	go func() {
		err := cmd.Wait()
		s.mu.Lock()
		s.waitErr = err
		s.mu.Unlock()
		close(done)
	}()

	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	if err := s.waitHealthy(ctx, done); err != nil {
		s.mu.Lock()
		exited := s.cmd == cmd && isClosed(done)
		if exited {
			s.cmd = nil // it is gone: a next start may run
		}
		s.mu.Unlock()
		return err
	}
	return nil
}

// isClosed reports whether ch is closed.
func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// waitHealthy polls /healthz until it answers 200, the process exits or ctx
// ends.
func (s *Server) waitHealthy(ctx context.Context, exited <-chan struct{}) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last string
	for {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		req, _ := http.NewRequestWithContext(rctx, http.MethodGet, s.URL+"/healthz", nil)
		resp, err := s.opts.healthClient().Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				cancel()
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		cancel()
		select {
		case <-exited:
			s.mu.Lock()
			err := s.waitErr
			s.mu.Unlock()
			return fmt.Errorf("the process exited: %v", err)
		case <-ctx.Done():
			return fmt.Errorf("%w; last /healthz answer: %s", ctx.Err(), last)
		case <-tick.C:
		}
	}
}

// Kill ends the process with SIGKILL (kill -9): no shutdown code runs.
func (s *Server) Kill() {
	s.t.Helper()
	s.end(false)
}

// Stop ends the process with SIGTERM and waits for it; it is killed if it
// does not exit within StopTimeout. A graceful stop must exit with status 0.
func (s *Server) Stop() {
	s.t.Helper()
	s.end(true)
}

func (s *Server) end(graceful bool) {
	s.t.Helper()
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	if cmd == nil {
		s.mu.Unlock()
		return
	}
	select {
	case <-done:
		// It already exited on its own: that is a crash.
		err := s.waitErr
		s.cmd = nil
		s.mu.Unlock()
		s.t.Errorf("cibaproxy exited before the test stopped it: %v", err)
		return
	default:
	}
	s.stopping = true
	s.mu.Unlock()

	if testproc.End(cmd, done, graceful, StopTimeout) {
		s.t.Errorf("cibaproxy did not exit within %v of SIGTERM; killed it", StopTimeout)
	}
	s.mu.Lock()
	err := s.waitErr
	s.cmd = nil
	s.mu.Unlock()
	testproc.Stopped(&s.logs, "cibaproxy", graceful, err)
	if graceful && err != nil {
		s.t.Errorf("cibaproxy did not exit cleanly after SIGTERM: %v", err)
	}
}

// Restart starts the server again on the same address and data directory
// after Kill or Stop, and waits until it is ready.
func (s *Server) Restart() {
	s.t.Helper()
	if err := s.start(); err != nil {
		s.t.Fatalf("cibaproxy did not become ready: %v\n%s", err, s.Logs())
	}
}

// Logs returns everything the server processes wrote so far.
func (s *Server) Logs() string { return s.logs.String() }

func (s *Server) cleanup() {
	s.Stop()
	logs := s.Logs()
	if strings.Contains(logs, "WARNING: DATA RACE") {
		s.t.Errorf("the race detector found a data race in cibaproxy (see its stderr below)")
	}
	if strings.Contains(logs, "panic:") || strings.Contains(logs, "handler panic") {
		s.t.Errorf("cibaproxy panicked (see its stderr below)")
	}
	if s.t.Failed() || os.Getenv(EnvLogs) != "" {
		s.t.Logf("cibaproxy stderr:\n%s", logs)
	}
}
