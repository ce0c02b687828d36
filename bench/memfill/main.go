// Command memfill measures what a pending request costs in memory. It builds
// the instance the server runs (internal/app, config from bench/bench.yaml:
// local upstream, client registry, ciba service, HTTP handler, metrics), but
// on the in-memory store, which is also what the embedded store keeps in
// memory (the embedded store is a memory.Store plus a bbolt journal; bbolt's
// file is mapped, not on the Go heap). It then creates -n
// requests through the real handler, POST /bc-authorize with HTTP Basic
// client credentials and a distinct login hint, binding message and scope
// per request, optionally polls each once (POST /token, which adds its pace
// state), and reports the live heap after a GC, per request, and the GC
// CPU time one full collection costs with the requests resident: the
// marking work they add to every cycle of a busy server.
//
//	go run ./bench/memfill -n 1000000
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/app"
	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/config"
	"github.com/cibaproxy/cibaproxy/internal/store/memory"
)

const nUsers = 1000

func main() {
	n := flag.Int("n", 1_000_000, "pending requests to create")
	poll := flag.Bool("poll", true, "poll each request once (adds its pace state)")
	cfgPath := flag.String("config", "bench/bench.yaml", "benchmark config (its store and webhook are ignored)")
	limit := flag.Float64("limit", 2048, "budget in bytes per request; exit 1 above it")
	memprofile := flag.String("memprofile", "", "write a heap profile (after the fill) to this file")
	flag.Parse()
	if err := run(*n, *poll, *cfgPath, *limit, *memprofile); err != nil {
		fmt.Fprintln(os.Stderr, "memfill:", err)
		os.Exit(1)
	}
}

// gcCPU returns the CPU seconds the garbage collector has spent so far
// (runtime/metrics /cpu/classes/gc/total:cpu-seconds: marking, assists,
// pauses).
func gcCPU() float64 {
	s := []metrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindFloat64 {
		return 0
	}
	return s[0].Value.Float64()
}

// fullGCCost returns the median GC CPU seconds of one forced full cycle:
// the marking work the live heap costs every cycle.
func fullGCCost() float64 {
	const runs = 7
	costs := make([]float64, runs)
	for i := range costs {
		before := gcCPU()
		runtime.GC()
		costs[i] = gcCPU() - before
	}
	slices.Sort(costs)
	return costs[runs/2]
}

func heap() runtime.MemStats {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m
}

func run(n int, poll bool, cfgPath string, limit float64, memprofile string) error {
	runtime.MemProfileRate = 64 << 10 // coarser than the default: cheaper over millions of requests
	ctx := context.Background()
	if os.Getenv("BENCH_DATA") == "" {
		_ = os.Setenv("BENCH_DATA", os.TempDir()) // unused: the store is memory
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return err
	}
	// Many users, as a real directory would have; each request names one.
	hash := cfg.Upstream.Local.Users[0].PasswordHash
	users := make([]config.User, nUsers)
	for i := range users {
		name := fmt.Sprintf("user%04d@example.com", i)
		users[i] = config.User{Username: name, Subject: "sub-" + name, PasswordHash: hash,
			Claims: map[string]any{"email": name}}
	}
	cfg.Upstream.Local.Users = users
	// No channel: nobody is told of the requests, which stay pending.
	cfg.Channels.Webhook.URL = ""
	st := memory.New()
	a, err := app.New(ctx, cfg, app.Options{Store: st})
	if err != nil {
		return err
	}
	defer a.Close()
	h := a.Handler
	cred := "Basic " + basic(cfg.Clients[0].ID, cfg.Clients[0].Secret)

	// Warm up (lazy initialisations), then take the baseline.
	for i := range 2 {
		if _, err := authorize(h, cred, i); err != nil {
			return err
		}
	}
	debug.FreeOSMemory()
	gcBefore := fullGCCost()
	before := heap()
	start := time.Now()
	var id string
	for i := range n {
		if id, err = authorize(h, cred, i); err != nil {
			return fmt.Errorf("request %d: %w", i, err)
		}
		if poll {
			if err := pollOnce(h, cred, id); err != nil {
				return fmt.Errorf("poll %d: %w", i, err)
			}
		}
	}
	elapsed := time.Since(start)
	after := heap()
	per := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n)
	verdict := "met"
	if per > limit {
		verdict = "NOT met"
	}
	fmt.Printf("memfill: %d pending requests (poll=%v) created through the handler in %.1fs\n", n, poll, elapsed.Seconds())
	fmt.Printf("memfill: live heap %.1f MiB -> %.1f MiB: %.0f bytes per request (target <= %.0f: %s); HeapSys %.1f MiB, Sys %.1f MiB\n",
		mib(before.HeapAlloc), mib(after.HeapAlloc), per, limit, verdict, mib(after.HeapSys), mib(after.Sys))
	fmt.Printf("memfill: live objects %d -> %d: %.1f objects per request\n",
		before.HeapObjects, after.HeapObjects, float64(int64(after.HeapObjects)-int64(before.HeapObjects))/float64(n))
	gcAfter := fullGCCost()
	fmt.Printf("memfill: one full GC cycle costs %.1f ms of GC CPU with the requests resident, %.1f ms before them: %.0f ns of marking per request\n",
		gcAfter*1e3, gcBefore*1e3, (gcAfter-gcBefore)*1e9/float64(n))
	if memprofile != "" {
		f, err := os.Create(memprofile)
		if err != nil {
			return err
		}
		if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	// Keep everything reachable until after the measurement.
	if r, err := st.GetRequest(ctx, id); err != nil || r.Status != ciba.StatusPending {
		return fmt.Errorf("last request not pending: %v", err)
	}
	runtime.KeepAlive(st)
	runtime.KeepAlive(h)
	if per > limit {
		os.Exit(1)
	}
	return nil
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

func basic(id, secret string) string {
	return base64.StdEncoding.EncodeToString([]byte(id + ":" + secret))
}

// authorize makes request i through the handler and returns its auth_req_id.
func authorize(h http.Handler, cred string, i int) (string, error) {
	user := fmt.Sprintf("user%04d@example.com", i%nUsers)
	body := "scope=openid+email&login_hint=" + user + "&binding_message=Code+" + strconv.Itoa(1000+i%9000)
	req := httptest.NewRequest(http.MethodPost, "/bc-authorize", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", cred)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		return "", fmt.Errorf("bc-authorize answered %d: %s", rec.Code, rec.Body)
	}
	var ar struct {
		AuthReqID string `json:"auth_req_id"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &ar); err != nil {
		return "", err
	}
	return ar.AuthReqID, nil
}

// pollOnce polls request id once; it must answer authorization_pending.
func pollOnce(h http.Handler, cred, id string) error {
	body := "grant_type=urn%3Aopenid%3Aparams%3Agrant-type%3Aciba&auth_req_id=" + id
	req := httptest.NewRequest(http.MethodPost, "/token", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", cred)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if got := rec.Body.String(); got != `{"error":"authorization_pending"}` {
		return fmt.Errorf("token answered %d: %s", rec.Code, got)
	}
	return nil
}
