package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/app"
	"github.com/cibaproxy/cibaproxy/internal/config"
	"github.com/cibaproxy/cibaproxy/internal/store/embedded"
	"github.com/cibaproxy/cibaproxy/internal/store/memory"
)

// runDirect seeds n pending requests into the store cfgPath names (the
// embedded store under $BENCH_DATA with bench/bench.yaml) through the
// server's own handler, in this process, and appends their auth_req_ids to
// out. No server may have the store open (the embedded store's file lock
// makes Open fail after a second if one does).
func runDirect(cfgPath string, n, c int, out, client, secret, hint string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return fmt.Errorf("load %s: %w", cfgPath, err)
	}
	if cfg.Store.Type != config.StoreEmbedded {
		return fmt.Errorf("%s: -config seeds an embedded store only, not %q", cfgPath, cfg.Store.Type)
	}
	// No channel: nobody is told of the requests, which stay pending, as
	// with the sweep's server (BENCH_WEBHOOK empty).
	cfg.Channels.Webhook.URL = ""
	// The instance runs on the in-memory store with embedded.Bulk as its
	// journal: every write the handler makes is kept, in the embedded
	// store's encoding, and written to the file at the end in a few large
	// transactions (the server's journal commits each batch of concurrent
	// writes with an fsync: minutes for a million).
	bulk := embedded.NewBulk()
	a, err := app.New(ctx, cfg, app.Options{
		Logger: slog.New(slog.DiscardHandler),
		Store:  memory.New(memory.WithJournal(bulk)),
	})
	if err != nil {
		return fmt.Errorf("build the instance of %s: %w", cfgPath, err)
	}
	h := a.Handler
	cred := "Basic " + basicAuth(client, secret)
	// Every request stays live until the file is written: collections
	// that free nothing are what would cost the most.
	debug.SetGCPercent(400)
	send := func(_ context.Context, i int) (string, error) {
		return authorizeDirect(h, cred, hint, i)
	}
	ids, elapsed, err := fill(ctx, cancel, n, c, send)
	if cerr := a.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close the store: %w", cerr)
	}
	if err != nil {
		return err
	}
	if got := bulk.Requests(); got != n {
		return fmt.Errorf("%d requests created, %d kept for the file", n, got)
	}
	t0 := time.Now()
	if err := bulk.WriteFile(ctx, cfg.Store.Path); err != nil {
		return err
	}
	written := time.Since(t0)
	if err := writeIDs(out, ids, os.O_APPEND); err != nil {
		return err
	}
	fmt.Printf("seed: %d pending requests created in-process in %.2fs (%.0f/s, %d concurrent), written to %s in %.2fs -> %s\n",
		n, elapsed.Seconds(), float64(n)/elapsed.Seconds(), c, cfg.Store.Path, written.Seconds(), out)
	return nil
}

// authorizeDirect sends request i to the handler h and returns its
// auth_req_id; the body is the one authorize sends over HTTP.
func authorizeDirect(h http.Handler, cred, hint string, i int) (string, error) {
	form := url.Values{
		"scope":           {"openid email"},
		"login_hint":      {hint},
		"binding_message": {fmt.Sprintf("Code %04d", i%10000)},
	}
	req, err := http.NewRequest(http.MethodPost, "http://seed.invalid/bc-authorize", strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.RemoteAddr = "127.0.0.1:1"
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
	if err := json.Unmarshal(rec.Body.Bytes(), &ar); err != nil || ar.AuthReqID == "" {
		return "", fmt.Errorf("bc-authorize answered %s", rec.Body)
	}
	return ar.AuthReqID, nil
}

// basicAuth is the HTTP Basic credential of client_secret_basic: id and
// secret form-encoded first (RFC 6749 section 2.3.1), as authorize sends it.
func basicAuth(id, secret string) string {
	return base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id) + ":" + url.QueryEscape(secret)))
}
