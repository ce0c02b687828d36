// Command heldpolls measures held long polls at scale (the performance
// issue's item 3): it creates -n pending requests on a cibaproxy whose long
// polling is on, holds one poll of each open at once (from several loopback
// source addresses, so that the client's ports do not run out), reads the
// server's memory from its metrics listener before and while they are
// held, then approves -sample of them, -c at a time, at the callback
// endpoint and times each approval's answer to the held poll it ends.
//
// It is the webhook receiver of the local upstream (-listen), to learn each
// request's callback. Every wait is bounded; it closes every connection it
// opened before it exits.
//
//	heldpolls -url http://127.0.0.1:18080 -metrics http://127.0.0.1:18089/metrics \
//	  -listen 127.0.0.1:18095 -n 10000 -sample 200 -c 4
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cibaproxy/cibaproxy/bench/internal/benchclient"
)

type options struct {
	base, metrics, listen, client, tsv string
	pprof, pprofOut                    string
	n, sample, c, perSource            int
	timeout                            time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.base, "url", "http://127.0.0.1:18080", "cibaproxy's base URL (on 127.0.0.1)")
	flag.StringVar(&o.metrics, "metrics", "http://127.0.0.1:18089/metrics", "cibaproxy's metrics URL")
	flag.StringVar(&o.listen, "listen", "127.0.0.1:18095", "address of the webhook receiver")
	flag.StringVar(&o.client, "client", "bench-poll:bench-poll-secret", "the poll client's id:secret")
	flag.StringVar(&o.tsv, "tsv", "", "append a result line to this TSV file (header written when it is new)")
	flag.StringVar(&o.pprof, "pprof", "", "base URL of the server's net/http/pprof (bench/profile), to save heap and goroutine profiles while the polls are held")
	flag.StringVar(&o.pprofOut, "pprof-out", "heldpolls", "file name prefix of those profiles (.heap.pprof, .goroutine.txt)")
	flag.IntVar(&o.n, "n", 10000, "held polls")
	flag.IntVar(&o.sample, "sample", 200, "approvals timed while the polls are held")
	flag.IntVar(&o.c, "c", 4, "approvals at a time")
	flag.IntVar(&o.perSource, "per-source", 20000, "connections per loopback source address (127.0.0.2, 127.0.0.3, ...)")
	flag.DurationVar(&o.timeout, "timeout", 3*time.Minute, "bound of the whole run")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "heldpolls:", err)
		os.Exit(1)
	}
}

// raiseNOFILE raises this process's open-file limit to want, the hard limit
// too when it is lower and the process may (root); it returns the soft limit
// in force.
func raiseNOFILE(want uint64) uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	if rl.Max < want {
		up := syscall.Rlimit{Cur: want, Max: want}
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &up) == nil {
			return want
		}
	}
	if rl.Cur < min(want, rl.Max) {
		rl.Cur = min(want, rl.Max)
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
	}
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl)
	return rl.Cur
}

// held is one held poll: its connection and, once answered, when and how.
type held struct {
	conn    net.Conn
	done    chan struct{}
	at      time.Time
	status  int
	granted bool
	err     error
}

// read reads the poll's answer (one HTTP/1.1 response with a
// Content-Length) and records the arrival of its first byte.
func (h *held) read(deadline time.Time) {
	defer close(h.done)
	_ = h.conn.SetReadDeadline(deadline)
	br := bufio.NewReaderSize(h.conn, 512)
	line, err := br.ReadString('\n')
	h.at = time.Now()
	if err != nil {
		h.err = err
		return
	}
	if f := strings.Fields(line); len(f) >= 2 {
		h.status, _ = strconv.Atoi(f[1])
	}
	length := -1
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			h.err = err
			return
		}
		l = strings.TrimSpace(l)
		if l == "" {
			break
		}
		if k, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(k, "Content-Length") {
			length, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	if length < 0 || length > 64<<10 {
		h.err = fmt.Errorf("answer without a usable Content-Length (%d)", length)
		return
	}
	body := make([]byte, length)
	if _, err := io.ReadFull(br, body); err != nil {
		h.err = err
		return
	}
	h.granted = bytes.Contains(body, []byte(`"access_token"`))
}

// snapshot is what the server's metrics say of its memory.
type snapshot struct{ rss, heap, stack, goroutines, parked float64 }

func readMetrics(ctx context.Context, hc *http.Client, u string) (snapshot, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	resp, err := hc.Do(req)
	if err != nil {
		return snapshot{}, fmt.Errorf("metrics: %w", err)
	}
	defer resp.Body.Close()
	var s snapshot
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			continue
		}
		switch name {
		case "process_resident_memory_bytes":
			s.rss = f
		case "go_memstats_heap_inuse_bytes":
			s.heap = f
		case "go_memstats_stack_inuse_bytes":
			s.stack = f
		case "go_goroutines":
			s.goroutines = f
		case "cibaproxy_parked_polls":
			s.parked = f
		}
	}
	if s.rss == 0 || s.goroutines == 0 {
		return s, errors.New("metrics: no process_resident_memory_bytes or go_goroutines")
	}
	return s, sc.Err()
}

func run(o options) error {
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	limit := raiseNOFILE(uint64(o.n + 4096))
	if limit < uint64(o.n+256) {
		return fmt.Errorf("the open-file limit is %d, too low for %d held polls (raise it: ulimit -n, as root also -Hn)", limit, o.n)
	}
	id, secret, _ := strings.Cut(o.client, ":")
	hostport := strings.TrimPrefix(o.base, "http://")
	rv, err := benchclient.Listen(o.listen)
	if err != nil {
		return err
	}
	defer rv.Close()
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64}}

	// 1. The pending requests, and every webhook message about them.
	start := time.Now()
	ids := make([]string, o.n)
	if err := parallel(ctx, o.n, 64, func(ctx context.Context, i int) error {
		var err error
		ids[i], err = benchclient.Authorize(ctx, hc, o.base, id, secret, binding(i))
		return err
	}); err != nil {
		return err
	}
	for rv.Count() < o.n && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	log.Printf("heldpolls: %d pending requests and their webhook messages in %.1f s", o.n, time.Since(start).Seconds())
	idle, err := settle(ctx, hc, o.metrics, 0)
	if err != nil {
		return err
	}

	// 2. One held poll of each, from 127.0.0.2, 127.0.0.3, ...
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(id+":"+secret))
	polls := make([]*held, o.n)
	deadline := time.Now().Add(o.timeout)
	var answeredEarly atomic.Int64
	start = time.Now()
	if err := parallel(ctx, o.n, 128, func(ctx context.Context, i int) error {
		src := net.IPv4(127, 0, 0, byte(2+i/o.perSource))
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: 10 * time.Second}
		conn, err := d.DialContext(ctx, "tcp", hostport)
		if err != nil {
			return fmt.Errorf("dial from %s: %w", src, err)
		}
		body := benchclient.PollForm(ids[i])
		req := "POST /token HTTP/1.1\r\nHost: " + hostport + "\r\nAuthorization: " + auth +
			"\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
		h := &held{conn: conn, done: make(chan struct{})}
		polls[i] = h
		if _, err := io.WriteString(conn, req); err != nil {
			return fmt.Errorf("write poll: %w", err)
		}
		go func() {
			h.read(deadline)
			if h.err == nil {
				answeredEarly.Add(1)
			}
		}()
		return nil
	}); err != nil {
		closeAll(polls)
		return err
	}
	openSecs := time.Since(start).Seconds()
	// Held once the server runs a goroutine per connection and stops
	// growing; a poll answered at once would show here as an early answer.
	full, err := settle(ctx, hc, o.metrics, idle.goroutines+float64(o.n))
	if err != nil {
		closeAll(polls)
		return err
	}
	early := answeredEarly.Load()
	log.Printf("heldpolls: %d polls opened in %.1f s, %d answered before any approval; server goroutines %.0f -> %.0f, parked polls %.0f",
		o.n, openSecs, early, idle.goroutines, full.goroutines, full.parked)

	if o.pprof != "" {
		for _, p := range [][2]string{{"/debug/pprof/heap?gc=1", ".heap.pprof"}, {"/debug/pprof/goroutine?debug=1", ".goroutine.txt"}} {
			if err := save(ctx, hc, o.pprof+p[0], o.pprofOut+p[1]); err != nil {
				closeAll(polls)
				return err
			}
		}
	}

	// 3. Approvals of a sample, timed to the held poll's answer.
	s := min(o.sample, o.n)
	lat := make([]time.Duration, s)
	var bad atomic.Int64
	err = parallel(ctx, s, o.c, func(ctx context.Context, k int) error {
		i := k * o.n / s
		h, err := rv.Take(ctx, binding(i))
		if err != nil {
			return err
		}
		if err := benchclient.Approve(ctx, hc, h); err != nil {
			return err
		}
		approved := time.Now()
		select {
		case <-polls[i].done:
		case <-time.After(10 * time.Second):
			return fmt.Errorf("held poll %d not answered 10 s after its approval", i)
		}
		p := polls[i]
		if p.err != nil || p.status != http.StatusOK || !p.granted {
			bad.Add(1)
		}
		lat[k] = max(p.at.Sub(approved), 0)
		return nil
	})
	holdSecs := time.Since(start).Seconds()
	closeAll(polls)
	if err != nil {
		return err
	}
	slices.Sort(lat)
	q := func(p float64) float64 { return benchclient.Millis(lat, p) }
	per := func(a, b float64) float64 { return (b - a) / float64(o.n) }
	fmt.Printf("HELD n=%d open_s=%.1f held_s=%.1f early=%d not_granted=%d rss_per_b=%.0f heap_per_b=%.0f stack_per_b=%.0f goroutines_per=%.2f rss_mib=%.0f approvals=%d p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f\n",
		o.n, openSecs, holdSecs, early, bad.Load(), per(idle.rss, full.rss), per(idle.heap, full.heap), per(idle.stack, full.stack),
		per(idle.goroutines, full.goroutines), full.rss/(1<<20), s, q(0.5), q(0.9), q(0.99), q(1))
	if o.tsv != "" {
		return benchclient.AppendTSV(o.tsv, "held\trss_per_held_kib\theap_per_held_kib\tstack_per_held_kib\tapproval_p50_ms\tapproval_p99_ms",
			fmt.Sprintf("%d\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f", o.n, per(idle.rss, full.rss)/1024, per(idle.heap, full.heap)/1024,
				per(idle.stack, full.stack)/1024, q(0.5), q(0.99)))
	}
	return nil
}

// save writes what GET u answers to the file path.
func save(ctx context.Context, hc *http.Client, u, path string) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("profile: %w", err)
	}
	return f.Close()
}

// binding is the binding message of request i, by which its webhook
// message is found.
func binding(i int) string { return fmt.Sprintf("Hold %06d", i) }

// settle reads the metrics until the goroutine count reaches want (0: any)
// and stops changing, at most 30 s.
func settle(ctx context.Context, hc *http.Client, u string, want float64) (snapshot, error) {
	var last snapshot
	stable := 0
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); {
		s, err := readMetrics(ctx, hc, u)
		if err != nil {
			return s, err
		}
		// Held: one goroutine more per poll held by net/http, or the
		// poll parked (cibaproxy_parked_polls), once it stops changing.
		if s.goroutines+s.parked >= want && s.goroutines == last.goroutines && s.parked == last.parked {
			stable++
			if stable >= 3 {
				return s, nil
			}
		} else {
			stable = 0
		}
		last = s
		select {
		case <-ctx.Done():
			return s, ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
	return last, nil
}

// parallel runs fn for 0..n-1, c at a time, and stops at the first error.
func parallel(ctx context.Context, n, c int, fn func(context.Context, int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var next atomic.Int64
	var once sync.Once
	var first error
	var wg sync.WaitGroup
	for range min(c, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := fn(ctx, i); err != nil {
					once.Do(func() { first = err; cancel() })
					return
				}
			}
		})
	}
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}

func closeAll(polls []*held) {
	for _, h := range polls {
		if h != nil {
			h.conn.Close()
		}
	}
}

func init() { log.SetFlags(0) }
