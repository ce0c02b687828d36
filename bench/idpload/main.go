//go:build linux

// Command idpload measures what the point of cibaproxy is: the load that
// CIBA clients put on the identity provider (IdP) behind it. It is the IdP
// load scenario of the benchmark (bench/run.sh, issue #20 item 2).
//
// A population of -n pending CIBA requests, one client each: most poll at
// the interval they were given, a share (-bad) misbehaves and polls every
// -bad-every whatever it is told. Each request is approved after its own
// delay, spread evenly over [-delay-min, -delay-max]. The population runs
// once per mode, each on a fresh IdP (node-oidc-provider, test/idp/server.mjs,
// in-memory store):
//
//	direct     the clients call the IdP's CIBA endpoints themselves; the
//	           approval is the IdP's test API (its authentication device)
//	ciba       through cibaproxy's ciba (relay) upstream, cibaproxy
//	           registered at the IdP in poll mode; same approval
//	ciba-ping  the same with upstream_credentials.ping: the IdP pings
//	           cibaproxy, which then fetches the result once
//	oidc       through cibaproxy's oidc upstream: the user opens the
//	           approval link of the webhook message and signs in at the IdP
//	           (authorization code flow); cibaproxy redeems the code
//
// For each mode it counts the requests the IdP received (its /__test/counts
// counter, reset after start-up) and the IdP's CPU time (utime+stime of the
// node process from /proc/PID/stat), and reports both per approved request
// and the reduction factor against direct. It writes one TSV line per mode
// to -out (the chart's figures, for bench/draw) and every figure to raw/
// beside it.
//
// Every load is bounded: -n clients, each ending at its token, a final error
// or -timeout; everything listens on 127.0.0.1 and the processes started here
// are killed when it ends (and, through the parent-death signal, if it dies).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cibaproxy/cibaproxy/bench/internal/benchclient"
	"github.com/cibaproxy/cibaproxy/test/idp"
)

// options are the command line.
type options struct {
	cibaproxy string
	idpDir    string
	modes     []string
	n         int
	bad       float64
	badEvery  time.Duration
	interval  time.Duration
	delayMin  time.Duration
	delayMax  time.Duration
	ramp      time.Duration
	clients   int
	port      int
	out       string
	timeout   time.Duration
	warm      int
}

func main() {
	var o options
	var modes string
	flag.StringVar(&o.cibaproxy, "cibaproxy", "", "path of the cibaproxy binary (modes other than direct)")
	flag.StringVar(&o.idpDir, "idp-dir", "test/idp", "directory of server.mjs and its node_modules")
	flag.StringVar(&modes, "modes", "direct,ciba,ciba-ping,oidc", "modes to run, in order")
	flag.IntVar(&o.n, "n", 1000, "pending requests (one client each)")
	flag.Float64Var(&o.bad, "bad", 0.10, "share of misbehaving clients")
	flag.DurationVar(&o.badEvery, "bad-every", 200*time.Millisecond, "how often a misbehaving client polls")
	flag.DurationVar(&o.interval, "interval", 5*time.Second, "poll interval the IdP and cibaproxy announce (whole seconds)")
	flag.DurationVar(&o.delayMin, "delay-min", 5*time.Second, "shortest delay from a request to its approval")
	flag.DurationVar(&o.delayMax, "delay-max", 20*time.Second, "longest delay from a request to its approval")
	flag.DurationVar(&o.ramp, "ramp", 2*time.Second, "the requests start spread over this long")
	flag.IntVar(&o.clients, "clients", 10, "client registrations the population is spread over")
	flag.IntVar(&o.port, "port", 18130, "base port: the IdP, cibaproxy and the webhook receiver use it .. +2")
	flag.StringVar(&o.out, "out", "bench/out/idpload.tsv", "TSV file of the results (rewritten)")
	flag.DurationVar(&o.timeout, "timeout", 2*time.Minute, "bound of one mode's population")
	flag.IntVar(&o.warm, "warm", 300, "unmeasured CIBA flows run directly on each fresh IdP first (its JIT compiler's warm-up)")
	flag.Parse()
	o.modes = strings.Split(modes, ",")
	if err := o.check(); err != nil {
		fmt.Fprintln(os.Stderr, "idpload:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "idpload:", err)
		os.Exit(1)
	}
}

func (o options) check() error {
	for _, m := range o.modes {
		switch m {
		case "direct":
		case "ciba", "ciba-ping", "oidc":
			if o.cibaproxy == "" {
				return fmt.Errorf("mode %s needs -cibaproxy", m)
			}
		default:
			return fmt.Errorf("unknown mode %q", m)
		}
	}
	switch {
	case o.n < 1 || o.n > 100000:
		return errors.New("-n must be 1..100000")
	case o.bad < 0 || o.bad > 1:
		return errors.New("-bad must be 0..1")
	case o.interval < time.Second || o.interval%time.Second != 0:
		return errors.New("-interval must be whole seconds, at least 1s")
	case o.delayMin <= 0 || o.delayMax < o.delayMin:
		return errors.New("-delay-min must be positive and at most -delay-max")
	case o.warm < 0 || o.warm > 100000:
		return errors.New("-warm must be 0..100000")
	case o.clients < 1 || o.badEvery <= 0 || o.timeout <= 0:
		return errors.New("-clients, -bad-every and -timeout must be positive")
	}
	return nil
}

// result is one mode's measurement.
type result struct {
	mode        string
	approved    int // clients that got their tokens
	failed      int // clients that ended otherwise
	clientPolls int64
	idpTotal    int // every request the IdP received
	idpSignIn   int // of which the user's sign-in pages (oidc mode)
	idpToken    int // of which token endpoint requests
	idpCPU      float64
	proxyCPU    float64
	wall        time.Duration
	latP50      time.Duration // approval → tokens at the client
	latP99      time.Duration
}

func run(ctx context.Context, o options) error {
	if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
		return fmt.Errorf("results directory: %w", err)
	}
	nbad := int(math.Round(o.bad * float64(o.n)))
	fmt.Printf("   %d pending requests over %d clients, %d of them misbehaving (poll every %v), interval %v, approval after %v-%v, starts spread over %v\n",
		o.n, o.clients, nbad, o.badEvery, o.interval, o.delayMin, o.delayMax, o.ramp)
	var results []result
	for _, m := range o.modes {
		r, err := runMode(ctx, o, m)
		if err != nil {
			return fmt.Errorf("mode %s: %w", m, err)
		}
		results = append(results, r)
		a := float64(max(r.approved, 1))
		fmt.Printf("   %-9s approved %d/%d in %.1fs; IdP: %d requests (%.2f per approval; %d token endpoint, %d sign-in pages), %.3f CPU-s (%.2f ms per approval); cibaproxy %.3f CPU-s; client polls %d; approval->tokens p50 %.2fs p99 %.2fs\n",
			m, r.approved, o.n, r.wall.Seconds(), r.idpTotal, float64(r.idpTotal)/a, r.idpToken, r.idpSignIn,
			r.idpCPU, 1000*r.idpCPU/a, r.proxyCPU, r.clientPolls, r.latP50.Seconds(), r.latP99.Seconds())
	}
	if err := writeTSV(o, results); err != nil {
		return err
	}
	fmt.Printf("   (results: %s, every figure in %s)\n", o.out, filepath.Join(filepath.Dir(o.out), "raw", filepath.Base(o.out)))
	summary(results)
	return nil
}

func summary(results []result) {
	var direct *result
	for i := range results {
		if results[i].mode == "direct" {
			direct = &results[i]
		}
	}
	per := func(r result) (req, noSignIn, cpu float64) {
		a := float64(max(r.approved, 1))
		return float64(r.idpTotal) / a, float64(r.idpTotal-r.idpSignIn) / a, 1000 * r.idpCPU / a
	}
	factor := func(d, v float64) string {
		if v <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.1fx %s", d/v, verdict(d/v))
	}
	fmt.Printf("   %-10s %13s %13s %16s %13s %16s %14s %14s\n", "mode", "IdP req/appr", "reduction", "without sign-in", "reduction", "IdP CPU ms/appr", "reduction", "proxy ms/appr")
	for _, r := range results {
		req, noSignIn, cpu := per(r)
		fr, fn, fc := "-", "-", "-"
		if direct != nil && r.mode != "direct" {
			dreq, dno, dcpu := per(*direct)
			fr, fn, fc = factor(dreq, req), factor(dno, noSignIn), factor(dcpu, cpu)
		}
		fmt.Printf("   %-10s %13.2f %13s %16.2f %13s %16.2f %14s %14.2f\n", r.mode, req, fr, noSignIn, fn, cpu, fc, 1000*r.proxyCPU/float64(max(r.approved, 1)))
	}
	fmt.Println("   (reduction: direct's figure over the mode's; target >= 10x fewer IdP requests and IdP CPU. \"without sign-in\":")
	fmt.Println("    the oidc mode's user sign-in pages at the IdP left out, the part of the approval that direct CIBA does on its")
	fmt.Println("    authentication device. IdP CPU includes the approvals through its test API in the other modes)")
}

func verdict(f float64) string {
	if f >= 10 {
		return "met"
	}
	return "NOT met"
}

// writeTSV writes every figure of each mode to raw/NAME beside -out, and
// the chart's (bench/draw) to -out: per approval, the IdP's requests, its
// CPU and cibaproxy's, the reduction factors against direct (1 for direct
// itself) and the approval → tokens latency.
func writeTSV(o options, results []result) error {
	var raw, chart strings.Builder
	raw.WriteString("mode\tn\tbad\tinterval_s\tdelay_min_s\tdelay_max_s\tapproved\tfailed\tclient_polls\tidp_requests\tidp_token_requests\tidp_signin_requests\tidp_cpu_s\tproxy_cpu_s\tidp_requests_per_approval\tidp_cpu_ms_per_approval\tlatency_p50_s\tlatency_p99_s\twall_s\n")
	chart.WriteString("mode\tidp_requests_per_approval\tidp_cpu_ms\tproxy_cpu_ms\treduction_requests_x\treduction_cpu_x\tlatency_p50_s\tlatency_p99_s\n")
	var dreq, dcpu float64
	for _, r := range results {
		if r.mode == "direct" && r.approved > 0 {
			dreq, dcpu = float64(r.idpTotal)/float64(r.approved), r.idpCPU/float64(r.approved)
		}
	}
	for _, r := range results {
		a := float64(max(r.approved, 1))
		fmt.Fprintf(&raw, "%s\t%d\t%.2f\t%.0f\t%.1f\t%.1f\t%d\t%d\t%d\t%d\t%d\t%d\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%.1f\n",
			r.mode, o.n, o.bad, o.interval.Seconds(), o.delayMin.Seconds(), o.delayMax.Seconds(), r.approved, r.failed,
			r.clientPolls, r.idpTotal, r.idpToken, r.idpSignIn, r.idpCPU, r.proxyCPU,
			float64(r.idpTotal)/a, 1000*r.idpCPU/a, r.latP50.Seconds(), r.latP99.Seconds(), r.wall.Seconds())
		var fr, fc float64
		if req, cpu := float64(r.idpTotal)/a, r.idpCPU/a; req > 0 && cpu > 0 {
			fr, fc = dreq/req, dcpu/cpu
		}
		fmt.Fprintf(&chart, "%s\t%.3f\t%.3f\t%.3f\t%.2f\t%.2f\t%.3f\t%.3f\n",
			r.mode, float64(r.idpTotal)/a, 1000*r.idpCPU/a, 1000*r.proxyCPU/a, fr, fc, r.latP50.Seconds(), r.latP99.Seconds())
	}
	rawPath := filepath.Join(filepath.Dir(o.out), "raw", filepath.Base(o.out))
	if err := os.MkdirAll(filepath.Dir(rawPath), 0o755); err != nil {
		return fmt.Errorf("results directory: %w", err)
	}
	if err := os.WriteFile(rawPath, []byte(raw.String()), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	if err := os.WriteFile(o.out, []byte(chart.String()), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	return nil
}

// env is one mode's running processes and addresses.
type env struct {
	o        options
	mode     string
	idpURL   string
	proxyURL string // "" in direct mode
	hookAddr string
	idp      *proc
	proxy    *proc
	hc       *http.Client
}

func runMode(ctx context.Context, o options, mode string) (result, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	dir, err := os.MkdirTemp("", "cibaproxy-idpload-")
	if err != nil {
		return result{}, fmt.Errorf("temp dir: %w", err)
	}
	defer os.RemoveAll(dir)
	e := &env{
		o:        o,
		mode:     mode,
		idpURL:   "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(o.port)),
		hookAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(o.port+2)),
		hc: &http.Client{
			Timeout:   30 * time.Second,
			Transport: &http.Transport{MaxIdleConns: 4 * o.n, MaxIdleConnsPerHost: 2 * o.n, IdleConnTimeout: time.Minute},
		},
	}
	if mode != "direct" {
		e.proxyURL = "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(o.port+1))
	}
	if e.idp, err = e.startIdP(ctx, dir); err != nil {
		return result{}, err
	}
	defer e.idp.stop()
	appr := newApprover(e)
	if mode == "oidc" {
		stopHook, err := appr.listen()
		if err != nil {
			return result{}, err
		}
		defer stopHook()
	}
	if mode != "direct" {
		if e.proxy, err = e.startProxy(ctx, dir); err != nil {
			return result{}, err
		}
		defer e.proxy.stop()
	}
	if err := e.warmUp(ctx); err != nil {
		return result{}, err
	}
	if err := e.idpCall(ctx, http.MethodPost, "/__test/counts/reset", nil, http.StatusNoContent, nil); err != nil {
		return result{}, err
	}
	idp0, err := e.idp.cpu()
	if err != nil {
		return result{}, err
	}
	var proxy0 float64
	if e.proxy != nil {
		if proxy0, err = e.proxy.cpu(); err != nil {
			return result{}, err
		}
	}

	start := time.Now()
	runCtx, runCancel := context.WithTimeout(ctx, o.timeout)
	defer runCancel()
	outcomes := make([]outcome, o.n)
	var polls atomic.Int64
	var wg sync.WaitGroup
	nbad := int(math.Round(o.bad * float64(o.n)))
	for i := range o.n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			at := start.Add(time.Duration(int64(o.ramp) * int64(i) / int64(o.n)))
			if !sleepUntil(runCtx, at) {
				outcomes[i].err = runCtx.Err()
				return
			}
			// Every 1/bad-th client misbehaves, spread through the population.
			bad := nbad > 0 && (i*nbad)/o.n != ((i+1)*nbad)/o.n
			outcomes[i] = e.client(runCtx, appr, i, bad, &polls)
		}()
	}
	wg.Wait()
	wall := time.Since(start)
	appr.wait()
	if ctx.Err() != nil {
		return result{}, ctx.Err()
	}
	if appr.failed > 0 {
		fmt.Printf("   %-9s %d approvals failed (the first 3 are printed above)\n", mode, appr.failed)
	}

	r := result{mode: mode, wall: wall, clientPolls: polls.Load()}
	var lats []time.Duration
	var firstErr error
	for _, oc := range outcomes {
		if oc.err == nil {
			r.approved++
			lats = append(lats, oc.latency)
		} else {
			r.failed++
			if firstErr == nil {
				firstErr = oc.err
			}
		}
	}
	if firstErr != nil {
		fmt.Printf("   %-9s %d clients without tokens; the first: %v\n", mode, r.failed, firstErr)
	}
	slices.Sort(lats)
	if len(lats) > 0 {
		r.latP50 = lats[len(lats)/2]
		r.latP99 = lats[min(len(lats)-1, len(lats)*99/100)]
	}
	idp1, err := e.idp.cpu()
	if err != nil {
		return result{}, err
	}
	r.idpCPU = idp1 - idp0
	if e.proxy != nil {
		p1, err := e.proxy.cpu()
		if err != nil {
			return result{}, err
		}
		r.proxyCPU = p1 - proxy0
	}
	var counts idp.Counts
	if err := e.idpCall(ctx, http.MethodGet, "/__test/counts", nil, http.StatusOK, &counts); err != nil {
		return result{}, err
	}
	for path, c := range counts.Paths {
		r.idpTotal += c
		if path == "/auth" || strings.HasPrefix(path, "/auth/") || strings.HasPrefix(path, "/interaction/") {
			r.idpSignIn += c
		}
	}
	r.idpToken = counts.Paths["/token"]
	return r, nil
}

// outcome is how one client ended: its tokens (err nil) and how long after
// the approval they came.
type outcome struct {
	err     error
	latency time.Duration
}

// user is the account of request i (its login_hint).
func user(i int) string { return "user" + strconv.Itoa(i) }

// clientOf is the client registration request i uses.
func clientOf(o options, i int) (id, secret string) {
	c := i % o.clients
	return "load" + strconv.Itoa(c), "load-secret-" + strconv.Itoa(c)
}

// delay is request i's delay to its approval, spread evenly over
// [delayMin, delayMax] in an order unrelated to i's start and badness.
func delay(o options, i int) time.Duration {
	if o.n == 1 {
		return o.delayMin
	}
	k := (i * 7919) % o.n // 7919 is prime: a permutation unless it divides n
	return o.delayMin + time.Duration(int64(o.delayMax-o.delayMin)*int64(k)/int64(o.n-1))
}

// client is one CIBA client: bc-authorize, then polls until its tokens, a
// final error or ctx's end; its approval is scheduled delay(i) after the
// request was accepted.
func (e *env) client(ctx context.Context, appr *approver, i int, bad bool, polls *atomic.Int64) outcome {
	id, secret := clientOf(e.o, i)
	base, authorize := e.idpURL, "/backchannel"
	if e.proxyURL != "" {
		base, authorize = e.proxyURL, "/bc-authorize"
	}
	form := url.Values{"scope": {"openid"}, "login_hint": {user(i)}, "binding_message": {"B" + strconv.Itoa(i)}}
	var ans map[string]any
	status, err := e.post(ctx, base+authorize, id, secret, form, &ans)
	if err != nil {
		return outcome{err: fmt.Errorf("bc-authorize %d: %w", i, err)}
	}
	if status != http.StatusOK {
		return outcome{err: fmt.Errorf("bc-authorize %d: HTTP %d %v", i, status, ans)}
	}
	authReqID, _ := ans["auth_req_id"].(string)
	interval := 5 * time.Second // CIBA Core §7.3: no interval means 5 s
	if v, ok := ans["interval"].(float64); ok && v > 0 {
		interval = time.Duration(v) * time.Second
	}
	// A failed approval ends the client's wait at once.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	approvedAt := appr.schedule(ctx, i, time.Now().Add(delay(e.o, i)), cancel)
	poll := benchclient.PollValues(authReqID)
	for {
		wait := interval
		if bad {
			wait = e.o.badEvery
		}
		if !sleepUntil(ctx, time.Now().Add(wait)) {
			return outcome{err: fmt.Errorf("client %d: no tokens: %w", i, context.Cause(ctx))}
		}
		polls.Add(1)
		clear(ans)
		status, err := e.post(ctx, base+"/token", id, secret, poll, &ans)
		if err != nil {
			if ctx.Err() != nil {
				return outcome{err: fmt.Errorf("client %d: no tokens: %w", i, context.Cause(ctx))}
			}
			return outcome{err: fmt.Errorf("client %d poll: %w", i, err)}
		}
		if status == http.StatusOK {
			if _, ok := ans["access_token"]; !ok {
				return outcome{err: fmt.Errorf("client %d: 200 without access_token", i)}
			}
			at := approvedAt()
			if at.IsZero() {
				at = time.Now()
			}
			return outcome{latency: time.Since(at)}
		}
		switch ans["error"] {
		case "authorization_pending":
		case "slow_down":
			interval += 5 * time.Second // CIBA Core §11 / RFC 8628 §3.5
		default:
			return outcome{err: fmt.Errorf("client %d poll: HTTP %d %v", i, status, ans)}
		}
	}
}

// post sends form with HTTP Basic credentials and decodes the JSON answer.
// A request that fails before any answer (the server closed the idle
// keep-alive connection as it was reused: node's keepAliveTimeout is 5 s,
// the poll interval too) is sent once more, as a client would.
func (e *env) post(ctx context.Context, target, id, secret string, form url.Values, into any) (int, error) {
	status, err := benchclient.PostForm(ctx, e.hc, target, id, secret, form, into)
	if errors.Is(err, benchclient.ErrNoAnswer) && ctx.Err() == nil {
		return benchclient.PostForm(ctx, e.hc, target, id, secret, form, into)
	}
	return status, err
}

// idpCall calls the IdP's test API with a JSON body.
func (e *env) idpCall(ctx context.Context, method, path string, body any, want int, into any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
		rd = strings.NewReader(string(b))
	}
	req, err := http.NewRequestWithContext(ctx, method, e.idpURL+path, rd)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := e.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: HTTP %d: %.200s", method, path, resp.StatusCode, data)
	}
	if into != nil {
		if err := json.Unmarshal(data, into); err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	return nil
}

// sleepUntil waits until t or ctx's end; false on the latter.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// approver approves each request at its time: through the IdP's test API
// (direct and ciba modes: the IdP's authentication device) or, in oidc
// mode, as the user's browser following the approval link of the webhook
// message and signing in at the IdP.
type approver struct {
	e  *env
	wg sync.WaitGroup

	mu     sync.Mutex
	due    map[string]time.Time     // login_hint → when to approve (oidc)
	links  map[string]string        // login_hint → approval link (oidc)
	done   map[string]time.Time     // login_hint → when approved
	ready  map[string]chan struct{} // login_hint → closed when both due and link are known (oidc)
	failed int                      // approvals that failed
}

func newApprover(e *env) *approver {
	return &approver{e: e, due: map[string]time.Time{}, links: map[string]string{}, done: map[string]time.Time{}, ready: map[string]chan struct{}{}}
}

// schedule arranges request i's approval at t; the function it returns
// tells when the approval was done (zero while it was not).
// A failed approval is counted, and ends the client's wait through fail.
func (a *approver) schedule(ctx context.Context, i int, t time.Time, fail context.CancelCauseFunc) func() time.Time {
	hint := user(i)
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		if a.e.mode == "oidc" {
			a.mu.Lock()
			a.due[hint] = t
			ch := a.readyLocked(hint)
			a.mu.Unlock()
			select {
			case <-ch:
			case <-ctx.Done():
				return
			}
		}
		if !sleepUntil(ctx, t) {
			return
		}
		if err := a.approve(ctx, i, hint); err != nil {
			if ctx.Err() == nil {
				a.mu.Lock()
				a.failed++
				if a.failed <= 3 {
					fmt.Fprintf(os.Stderr, "idpload: approve %s: %.300s\n", hint, strings.Join(strings.Fields(err.Error()), " "))
				}
				a.mu.Unlock()
				fail(fmt.Errorf("the approval failed: %w", err))
			}
			return
		}
		a.mu.Lock()
		a.done[hint] = time.Now()
		a.mu.Unlock()
	}()
	return func() time.Time {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.done[hint]
	}
}

func (a *approver) readyLocked(hint string) chan struct{} {
	ch, ok := a.ready[hint]
	if !ok {
		ch = make(chan struct{})
		a.ready[hint] = ch
	}
	return ch
}

func (a *approver) wait() { a.wg.Wait() }

func (a *approver) approve(ctx context.Context, i int, hint string) error {
	if a.e.mode != "oidc" {
		// The relay may still be forwarding the request: a few tries.
		var err error
		for range 20 {
			if err = a.e.idpCall(ctx, http.MethodPost, "/__test/ciba/approve", map[string]string{"login_hint": hint}, http.StatusOK, nil); err == nil {
				return nil
			}
			if !sleepUntil(ctx, time.Now().Add(100*time.Millisecond)) {
				break
			}
		}
		return err
	}
	a.mu.Lock()
	link := a.links[hint]
	a.mu.Unlock()
	return a.signIn(ctx, i, link, hint)
}

var csrfInput = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// signIn is the user's browser: the approval page, Approve, the sign-in at
// the IdP, and back to cibaproxy's callback.
func (a *approver) signIn(ctx context.Context, i int, link, hint string) error {
	jar, err := cookiejar.New(nil)
	if err != nil {
		return fmt.Errorf("cookie jar: %w", err)
	}
	// Each user's browser is a phone of its own: its own loopback source
	// address (127.1.x.y), as cibaproxy's per-address limits would see it.
	src := &net.TCPAddr{IP: net.IPv4(127, 1, byte(i/250), byte(i%250+1))}
	tr := &http.Transport{DialContext: (&net.Dialer{LocalAddr: src, Timeout: 10 * time.Second}).DialContext}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Jar: jar, Timeout: 30 * time.Second, Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(method, target string, form url.Values) (*http.Response, string, error) {
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, err := http.NewRequestWithContext(ctx, method, target, body)
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", method, err)
		}
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		resp, err := hc.Do(req)
		if err != nil {
			return nil, "", fmt.Errorf("%s %s: %w", method, req.URL.Path, err)
		}
		defer resp.Body.Close()
		page, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return resp, string(page), err
	}
	resp, page, err := do(http.MethodGet, link, nil)
	if err != nil {
		return err
	}
	m := csrfInput.FindStringSubmatch(page)
	if resp.StatusCode != http.StatusOK || m == nil {
		return fmt.Errorf("approval page: HTTP %d: %.300s", resp.StatusCode, page)
	}
	resp, _, err = do(http.MethodPost, link, url.Values{"csrf": {m[1]}, "action": {"approve"}})
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusSeeOther {
		return fmt.Errorf("approve: HTTP %d, want 303 to the IdP", resp.StatusCode)
	}
	back, err := idp.Login(ctx, hc, resp.Header.Get("Location"), hint, "pw")
	if err != nil {
		return fmt.Errorf("sign-in at the IdP: %w", err)
	}
	resp, page, err = do(http.MethodGet, back.String(), nil)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("callback: HTTP %d: %.300s", resp.StatusCode, page)
	}
	return nil
}

// listen serves the webhook channel's receiver (oidc mode): each message's
// approval link is kept for its login_hint.
func (a *approver) listen() (func(), error) {
	srv, err := benchclient.Serve(a.e.hookAddr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m struct {
			LoginHint  string `json:"login_hint"`
			ApproveURL string `json:"approve_url"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&m); err != nil || m.ApproveURL == "" {
			http.Error(w, "bad message", http.StatusBadRequest)
			return
		}
		a.mu.Lock()
		if _, seen := a.links[m.LoginHint]; !seen {
			a.links[m.LoginHint] = m.ApproveURL
			close(a.readyLocked(m.LoginHint))
		}
		a.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	if err != nil {
		return nil, err
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}

// proc is a child process: the IdP or cibaproxy.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  *os.File
}

// cpu is the process's user+system CPU time so far, in seconds.
func (p *proc) cpu() (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", p.name, err)
	}
	// The fields after the parenthesised command name: state is field 3,
	// utime and stime are fields 14 and 15.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("%s: short /proc stat", p.name)
	}
	ut, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("%s: /proc stat: %q %q", p.name, f[11], f[12])
	}
	return (ut + st) / clockTicks, nil
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat times: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
	p.log.Close()
}

func startProc(name, logPath string, cmd *exec.Cmd) (*proc, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("%s log: %w", name, err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return &proc{name: name, cmd: cmd, log: f}, nil
}

// waitHTTP waits until GET u answers want (at most 30 s).
func waitHTTP(ctx context.Context, p *proc, u string, want int, logPath string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == want {
				return nil
			}
		}
		if p.cmd.ProcessState != nil || !sleepUntil(ctx, time.Now().Add(100*time.Millisecond)) {
			break
		}
	}
	logs, _ := os.ReadFile(logPath)
	return fmt.Errorf("%s did not come up on %s; its log:\n%s", p.name, u, logs)
}

// startIdP starts node-oidc-provider with the mode's client registrations
// and one account per request.
func (e *env) startIdP(ctx context.Context, dir string) (*proc, error) {
	o := e.o
	type account struct {
		ID                string `json:"account_id"`
		Email             string `json:"email"`
		EmailVerified     bool   `json:"email_verified"`
		PreferredUsername string `json:"preferred_username"`
	}
	cfg := struct {
		Port         int          `json:"port"`
		Issuer       string       `json:"issuer"`
		CIBAInterval int          `json:"ciba_interval"`
		Clients      []idp.Client `json:"clients"`
		Accounts     []account    `json:"accounts"`
	}{Port: o.port, Issuer: e.idpURL, CIBAInterval: int(o.interval / time.Second)}
	cfg.Clients = append(cfg.Clients, idp.Client{ID: warmClient, Secret: warmSecret, GrantTypes: []string{idp.GrantCIBA}, BackchannelTokenDeliveryMode: "poll"})
	for i := range o.warm {
		u := "warm" + strconv.Itoa(i)
		cfg.Accounts = append(cfg.Accounts, account{ID: u, Email: u + "@example.com", EmailVerified: true, PreferredUsername: u})
	}
	for c := range o.clients {
		id, secret := clientOf(o, c)
		cl := idp.Client{ID: id, Secret: secret, GrantTypes: []string{idp.GrantCIBA}, BackchannelTokenDeliveryMode: "poll"}
		switch e.mode {
		case "ciba-ping":
			cl.BackchannelTokenDeliveryMode = "ping"
			cl.BackchannelClientNotificationEndpoint = e.proxyURL + "/ciba/upstream-ping"
		case "oidc":
			cl = idp.Client{ID: id, Secret: secret, RedirectURIs: []string{e.proxyURL + "/approve/callback"}}
		}
		cfg.Clients = append(cfg.Clients, cl)
	}
	for i := range o.n {
		u := user(i)
		cfg.Accounts = append(cfg.Accounts, account{ID: u, Email: u + "@example.com", EmailVerified: true, PreferredUsername: u})
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("idp config: %w", err)
	}
	path := filepath.Join(dir, "idp.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return nil, fmt.Errorf("idp config: %w", err)
	}
	cmd := exec.CommandContext(ctx, "node", "server.mjs", path)
	cmd.Dir = o.idpDir
	logPath := filepath.Join(dir, "idp.log")
	p, err := startProc("node-oidc-provider", logPath, cmd)
	if err != nil {
		return nil, err
	}
	if err := waitHTTP(ctx, p, e.idpURL+"/.well-known/openid-configuration", http.StatusOK, logPath); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

// startProxy starts cibaproxy in front of the IdP with the mode's upstream,
// at its default settings but for the loopback addresses.
func (e *env) startProxy(ctx context.Context, dir string) (*proc, error) {
	o := e.o
	var b strings.Builder
	fmt.Fprintf(&b, "issuer: %s\nlisten: %s\nlog:\n  level: warn\nstore:\n  type: embedded\n  path: %s\n",
		e.proxyURL, strings.TrimPrefix(e.proxyURL, "http://"), filepath.Join(dir, "cibaproxy.db"))
	if e.mode == "oidc" {
		fmt.Fprintf(&b, "upstream:\n  type: oidc\n  oidc:\n    issuer: %s\n", e.idpURL)
		fmt.Fprintf(&b, "channels:\n  webhook:\n    url: http://%s/hook\n", e.hookAddr)
	} else {
		fmt.Fprintf(&b, "upstream:\n  type: ciba\n  ciba:\n    issuer: %s\n", e.idpURL)
	}
	fmt.Fprintf(&b, "ciba:\n  interval: %ds\noutbound:\n  allow_http: true\n  allow_networks: [127.0.0.0/8]\nclients:\n", int(o.interval/time.Second))
	for c := range o.clients {
		id, secret := clientOf(o, c)
		fmt.Fprintf(&b, "  - client_id: %s\n    client_secret: %s\n    backchannel_token_delivery_mode: poll\n", id, secret)
		if e.mode == "ciba-ping" {
			b.WriteString("    upstream_credentials:\n      ping: true\n")
		}
	}
	path := filepath.Join(dir, "cibaproxy.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return nil, fmt.Errorf("cibaproxy config: %w", err)
	}
	cmd := exec.CommandContext(ctx, e.o.cibaproxy, "serve", "--config", path)
	logPath := filepath.Join(dir, "cibaproxy.log")
	p, err := startProc("cibaproxy", logPath, cmd)
	if err != nil {
		return nil, err
	}
	if err := waitHTTP(ctx, p, e.proxyURL+"/.well-known/openid-configuration", http.StatusOK, logPath); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

// The IdP's client registration of the warm-up flows.
const (
	warmClient = "warm"
	warmSecret = "warm-secret"
)

// warmUp runs -warm complete CIBA flows directly on the IdP (bc-authorize,
// three pending polls, the approval, the token), 8 at a time, so that node's
// JIT compiler has compiled those paths before the measurement: a fresh node
// spends about twice the CPU per request.
func (e *env) warmUp(ctx context.Context) error {
	if e.o.warm == 0 {
		return nil
	}
	start := time.Now()
	next := make(chan int)
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := e.warmFlow(ctx, i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
feed:
	for i := range e.o.warm {
		select {
		case next <- i:
		case err := <-errs:
			close(next)
			wg.Wait()
			return fmt.Errorf("warm-up: %w", err)
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		return fmt.Errorf("warm-up: %w", err)
	default:
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	fmt.Printf("   %-9s warm-up: %d CIBA flows on the IdP in %.1fs (not counted)\n", e.mode, e.o.warm, time.Since(start).Seconds())
	return nil
}

func (e *env) warmFlow(ctx context.Context, i int) error {
	hint := "warm" + strconv.Itoa(i)
	var ans map[string]any
	status, err := e.post(ctx, e.idpURL+"/backchannel", warmClient, warmSecret, url.Values{"scope": {"openid"}, "login_hint": {hint}}, &ans)
	if err != nil || status != http.StatusOK {
		return fmt.Errorf("backchannel: HTTP %d %v %w", status, ans, err)
	}
	poll := benchclient.PollValues(fmt.Sprint(ans["auth_req_id"]))
	for range 3 {
		clear(ans)
		if status, err := e.post(ctx, e.idpURL+"/token", warmClient, warmSecret, poll, &ans); err != nil || ans["error"] != "authorization_pending" {
			return fmt.Errorf("pending poll: HTTP %d %v %w", status, ans, err)
		}
	}
	if err := e.idpCall(ctx, http.MethodPost, "/__test/ciba/approve", map[string]string{"login_hint": hint}, http.StatusOK, nil); err != nil {
		return err
	}
	clear(ans)
	if status, err := e.post(ctx, e.idpURL+"/token", warmClient, warmSecret, poll, &ans); err != nil || status != http.StatusOK {
		return fmt.Errorf("token: HTTP %d %v %w", status, ans, err)
	}
	return nil
}
