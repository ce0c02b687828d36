// Command seed creates pending CIBA requests through POST /bc-authorize,
// with a bounded number of concurrent requests, and writes their
// auth_req_ids to a file, one per line. It prints how long it took: each
// request is a durable write (fsync) in the embedded store.
//
//	go run ./bench/seed -url http://127.0.0.1:18080 -n 100000 -c 64 -out ids.txt
//
// With -config instead of -url (benchmark only: the pending-count sweep's
// million requests), it seeds the embedded store file of that
// configuration while no server has it open: it builds the instance the
// server runs (internal/app, the same store file, handler and ciba
// service) in this process and sends each POST /bc-authorize to its handler
// directly, without a network, many at a time so that the store's batched
// commits share their fsyncs. The requests on disk are those the server
// would have written; a server started on the file afterwards loads them
// as after a restart. -out is then appended to, not replaced.
//
//	BENCH_DATA=/tmp/d go run ./bench/seed -config bench/bench.yaml -n 1000000 -c 512 -out ids.txt
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	base := flag.String("url", "http://127.0.0.1:18080", "cibaproxy base URL")
	n := flag.Int("n", 1, "number of requests to create")
	c := flag.Int("c", 64, "concurrent requests")
	out := flag.String("out", "ids.txt", "file to write the auth_req_ids to")
	client := flag.String("client", "bench-poll", "client_id")
	secret := flag.String("secret", "bench-poll-secret", "client secret (client_secret_basic)")
	hint := flag.String("login-hint", "alice", "login_hint")
	timeout := flag.Duration("timeout", 5*time.Minute, "give up after this long")
	cfgPath := flag.String("config", "", "seed the embedded store of this configuration in-process (no server may run on it) instead of -url")
	flag.Parse()
	var err error
	if *cfgPath != "" {
		err = runDirect(*cfgPath, *n, *c, *out, *client, *secret, *hint, *timeout)
	} else {
		err = run(*base, *n, *c, *out, *client, *secret, *hint, *timeout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "seed:", err)
		os.Exit(1)
	}
}

func run(base string, n, c int, out, client, secret, hint string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: c, MaxConnsPerHost: c}}
	send := func(ctx context.Context, i int) (string, error) {
		return authorize(ctx, hc, base, client, secret, hint, i)
	}
	ids, elapsed, err := fill(ctx, cancel, n, c, send)
	if err != nil {
		return err
	}
	if err := writeIDs(out, ids, os.O_TRUNC); err != nil {
		return err
	}
	fmt.Printf("seed: %d pending requests in %.2fs (%.0f/s, %d concurrent) -> %s\n",
		n, elapsed.Seconds(), float64(n)/elapsed.Seconds(), c, out)
	return nil
}

// fill calls send for 0 .. n-1, c at a time, and returns the auth_req_ids
// in that order; the first error cancels the rest.
func fill(ctx context.Context, cancel context.CancelFunc, n, c int, send func(context.Context, int) (string, error)) ([]string, time.Duration, error) {
	ids := make([]string, n)
	var next atomic.Int64
	var firstErr error
	var errOnce sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < min(c, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				id, err := send(ctx, i)
				if err != nil {
					errOnce.Do(func() { firstErr = err; cancel() })
					return
				}
				ids[i] = id
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return nil, elapsed, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, elapsed, fmt.Errorf("after %s: %w", elapsed.Round(time.Millisecond), err)
	}
	return ids, elapsed, nil
}

// writeIDs writes ids to the file out, one per line; flag is os.O_TRUNC
// to replace it or os.O_APPEND to add to it.
func writeIDs(out string, ids []string, flag int) error {
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|flag, 0o644)
	if err != nil {
		return fmt.Errorf("open %s: %w", out, err)
	}
	bw := bufio.NewWriter(f)
	for _, id := range ids {
		_, _ = bw.WriteString(id)
		_ = bw.WriteByte('\n')
	}
	if err := bw.Flush(); err != nil {
		_ = f.Close()
		return fmt.Errorf("write %s: %w", out, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", out, err)
	}
	return nil
}

func authorize(ctx context.Context, hc *http.Client, base, client, secret, hint string, i int) (string, error) {
	form := url.Values{
		"scope":           {"openid email"},
		"login_hint":      {hint},
		"binding_message": {fmt.Sprintf("Code %04d", i%10000)},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/bc-authorize", strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(client), url.QueryEscape(secret))
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("bc-authorize answered %d: %s", resp.StatusCode, body)
	}
	var ar struct {
		AuthReqID string `json:"auth_req_id"`
	}
	if err := json.Unmarshal(body, &ar); err != nil || ar.AuthReqID == "" {
		return "", fmt.Errorf("bc-authorize answered %s", body)
	}
	return ar.AuthReqID, nil
}
