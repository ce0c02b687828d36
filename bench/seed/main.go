// Command seed creates pending CIBA requests through POST /bc-authorize,
// with a bounded number of concurrent requests, and writes their
// auth_req_ids to a file, one per line. It prints how long it took: each
// request is a durable write (fsync) in the embedded store.
//
//	go run ./bench/seed -url http://127.0.0.1:18080 -n 100000 -c 64 -out ids.txt
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
	flag.Parse()
	if err := run(*base, *n, *c, *out, *client, *secret, *hint, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "seed:", err)
		os.Exit(1)
	}
}

func run(base string, n, c int, out, client, secret, hint string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: c, MaxConnsPerHost: c}}
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
				id, err := authorize(ctx, hc, base, client, secret, hint, i)
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
		return firstErr
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("after %s: %w", elapsed.Round(time.Millisecond), err)
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(f)
	for _, id := range ids {
		_, _ = bw.WriteString(id)
		_ = bw.WriteByte('\n')
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Printf("seed: %d pending requests in %.2fs (%.0f/s, %d concurrent) -> %s\n",
		n, elapsed.Seconds(), float64(n)/elapsed.Seconds(), c, out)
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
