// Command flows measures complete CIBA flows (the performance issue's item
// 4): each of -c workers runs, until -d has passed, flow after flow of
// POST /bc-authorize, the webhook message, the approval at the callback
// endpoint (the local upstream's approval), and POST /token redeeming the
// tokens, whose ID token cibaproxy signed. It prints completed flows per
// second and the latency of a whole flow.
//
// It is the webhook receiver of the local upstream (-listen). Every wait is
// bounded.
//
//	flows -url http://127.0.0.1:18080 -listen 127.0.0.1:18095 -c 32 -d 10s
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cibaproxy/cibaproxy/bench/internal/benchclient"
)

func main() {
	base := flag.String("url", "http://127.0.0.1:18080", "cibaproxy's base URL")
	listen := flag.String("listen", "127.0.0.1:18095", "address of the webhook receiver")
	client := flag.String("client", "bench-poll:bench-poll-secret", "the poll client's id:secret")
	c := flag.Int("c", 32, "flows at a time")
	d := flag.Duration("d", 10*time.Second, "how long to start new flows")
	label := flag.String("label", "embedded", "name of this run in the output (the store)")
	tsv := flag.String("tsv", "", "append a result line to this TSV file (header written when it is new)")
	flag.Parse()
	if err := run(*base, *listen, *client, *label, *tsv, *c, *d); err != nil {
		fmt.Fprintln(os.Stderr, "flows:", err)
		os.Exit(1)
	}
}

func run(base, listen, client, label, tsv string, c int, d time.Duration) error {
	id, secret, _ := strings.Cut(client, ":")
	rv, err := benchclient.Listen(listen)
	if err != nil {
		return err
	}
	defer rv.Close()
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 2 * c}}
	var next atomic.Int64
	var failed atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	var firstErr error
	start := time.Now()
	end := start.Add(d)
	var wg sync.WaitGroup
	for range c {
		wg.Go(func() {
			for time.Now().Before(end) {
				i := next.Add(1)
				t0 := time.Now()
				err := flow(hc, rv, base, id, secret, fmt.Sprintf("Flow %07d", i))
				mu.Lock()
				if err != nil {
					failed.Add(1)
					if firstErr == nil {
						firstErr = err
					}
				} else {
					lat = append(lat, time.Since(t0))
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if len(lat) == 0 {
		return fmt.Errorf("no flow completed: %w", firstErr)
	}
	slices.Sort(lat)
	q := func(p float64) float64 { return benchclient.Millis(lat, p) }
	rate := float64(len(lat)) / elapsed.Seconds()
	fmt.Printf("FLOWS store=%s c=%d flows=%d failed=%d seconds=%.1f per_s=%.0f p50_ms=%.2f p99_ms=%.2f\n",
		label, c, len(lat), failed.Load(), elapsed.Seconds(), rate, q(0.5), q(0.99))
	if firstErr != nil {
		log.Printf("flows: first failure: %v", firstErr)
	}
	if tsv != "" {
		return benchclient.AppendTSV(tsv, "store\tflows_per_s\tflow_p50_ms\tflow_p99_ms",
			fmt.Sprintf("%s\t%.0f\t%.2f\t%.2f", label, rate, q(0.5), q(0.99)))
	}
	return nil
}

// flow runs one complete flow and checks that the token answer carries a
// signed ID token.
func flow(hc *http.Client, rv *benchclient.Receiver, base, id, secret, binding string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	authReqID, err := benchclient.Authorize(ctx, hc, base, id, secret, binding)
	if err != nil {
		return err
	}
	h, err := rv.Take(ctx, binding)
	if err != nil {
		return err
	}
	if err := benchclient.Approve(ctx, hc, h); err != nil {
		return err
	}
	var t struct {
		IDToken string `json:"id_token"`
	}
	status, err := benchclient.PostForm(ctx, hc, base+"/token", id, secret, benchclient.PollValues(authReqID), &t)
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	if status != http.StatusOK {
		return fmt.Errorf("token: HTTP %d", status)
	}
	if strings.Count(t.IDToken, ".") != 2 || strings.HasSuffix(t.IDToken, ".") {
		return errors.New("token: the answer has no signed id_token")
	}
	return nil
}

func init() { log.SetFlags(0) }
