package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/app"
	"github.com/cibaproxy/cibaproxy/internal/config"
	"github.com/cibaproxy/cibaproxy/internal/httpapi"
)

func cmdServe(ctx context.Context, args []string, c cmdIO) error {
	var path, listen string
	if err := c.flags("serve", args, func(fs *flag.FlagSet) {
		fs.StringVar(&path, "config", "", "config `file` (YAML)")
		fs.StringVar(&listen, "listen", "", "`host:port` to listen on, overriding the config's listen")
	}); err != nil {
		return err
	}
	stderr := c.stderr
	cfg, err := loadConfig("serve", path)
	if err != nil {
		return err
	}
	if listen != "" {
		cfg.Listen = listen
	}
	log := newLogger(cfg, stderr)
	a, err := app.New(ctx, cfg, app.Options{Logger: log, Version: buildVersion()})
	if err != nil {
		return err
	}
	defer a.Close()
	// The TLS server certificate in force, replaced on SIGHUP
	// (tlsreload.go); nil without tls.cert_file.
	var cert *serverCert
	if cfg.TLS.Enabled() {
		cert = newServerCert(cfg.TLS.Certificate)
	}
	defer func() { // runs once the dispatcher stopped: its last spans go too
		flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := a.Tracing.Shutdown(flushCtx); err != nil {
			log.Warn("tracing: flush on shutdown", slog.Any("error", err))
		}
	}()
	if cfg.Store.Type == config.StoreEmbedded {
		// The server holds the database file: operators reach it here.
		defer startAdmin(cfg.Store.Path, a, log)()
	}
	defer watchReload(ctx, path, listen, a, cert, log)()

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	// Requests run under a context of their own: the signal that starts the
	// shutdown does not cancel them, so the requests in flight finish (their
	// store writes included); it ends when serving has.
	reqCtx, cancelRequests := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRequests()
	srv := &http.Server{
		Handler:           a.Handler,
		BaseContext:       func(net.Listener) context.Context { return reqCtx },
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		// The request line and headers: approval links and the IdP's
		// redirect carry short query strings; the 1 MB default would let
		// each connection make the server parse a megabyte of them.
		MaxHeaderBytes: 64 << 10,
		// Long polls are held up to ciba.long_poll; leave room for them.
		// Every other handler must answer well within it: one that runs
		// bcrypt waits at most 1 s for a slot (app's hashSlots), else
		// answers busy.
		WriteTimeout: cfg.CIBA.LongPoll + 30*time.Second,
		IdleTimeout:  2 * time.Minute,
		ErrorLog:     slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	// Shutdown closes the listener first, then releases the held long
	// polls, which answer at once instead of holding the shutdown up: once a
	// held poll has its answer, a new connection is refused.
	srv.RegisterOnShutdown(a.Service.ReleaseHolds)
	if a.Parking != nil {
		// Parked long polls go back to srv once answered (keep-alive);
		// on shutdown they are answered at once, their connections
		// closed after the answer.
		a.Parking.WriteTimeout, a.Parking.IdleTimeout = srv.WriteTimeout, srv.IdleTimeout
		srv.RegisterOnShutdown(a.Parking.Release)
	}
	serve := srv.Serve
	if cfg.TLS.Enabled() {
		// Client certificates are requested, never required, and not
		// verified here: clientauth checks them per client (RFC 8705 §2),
		// so that self-signed ones reach self_signed_tls_client_auth.
		// The certificate is replaced on SIGHUP (tlsreload.go).
		srv.TLSConfig = &tls.Config{
			GetCertificate: cert.getCertificate,
			ClientAuth:     tls.RequestClientCert,
			MinVersion:     tls.VersionTLS12,
		}
		serve = func(ln net.Listener) error { return srv.ServeTLS(ln, "", "") }
	}
	if a.Parking != nil {
		// Started once srv is fully configured (TLSConfig above): Serve
		// reads it.
		go func() { _ = a.Parking.Serve(srv) }()
	}
	switch {
	case a.Telemetry != nil:
		mln, err := net.Listen("tcp", cfg.Metrics.Listen)
		if err != nil {
			return fmt.Errorf("listen on %s (metrics.listen): %w", cfg.Metrics.Listen, err)
		}
		// The metrics listener answers scrapes and probes: small requests,
		// so its headers are bounded and idle connections closed like the
		// main listener's.
		msrv := &http.Server{Handler: a.Telemetry, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
			WriteTimeout: 30 * time.Second, MaxHeaderBytes: 16 << 10, IdleTimeout: 2 * time.Minute,
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
		go func() {
			// A metrics listener that stops serving takes the health
			// probes with it: say so rather than go on without them.
			if err := msrv.Serve(mln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics listener stopped serving: /metrics, /healthz and /readyz no longer answer", slog.Any("error", err))
			}
		}()
		defer msrv.Close()
		log.Info("metrics, healthz and readyz listening", slog.String("addr", mln.Addr().String()))
	case cfg.Metrics.Listen == config.MetricsOnMain:
		log.Warn("metrics are served on the main listener (metrics.listen: main): whoever reaches cibaproxy reads every client_id and its request counts; prefer a listener of their own, e.g. metrics.listen: 127.0.0.1:9464")
	default:
		log.Info("metrics are not served: set metrics.listen, e.g. 127.0.0.1:9464, to serve them on a listener of their own")
	}
	runCtx, cancelRun := context.WithCancel(context.WithoutCancel(ctx))
	dispatched := make(chan error, 1)
	go func() { dispatched <- a.Run(runCtx) }()
	served := make(chan error, 1)
	go func() { served <- serve(ln) }()
	log.Info("cibaproxy listening", slog.String("addr", ln.Addr().String()), slog.Bool("tls", cfg.TLS.Enabled()), slog.String("issuer", cfg.Issuer),
		slog.String("store", cfg.Store.Type), slog.String("upstream", cfg.Upstream.Type), slog.String("version", buildVersion()))

	select {
	case err = <-served:
		cancelRun()
		<-dispatched
		return fmt.Errorf("serve: %w", err)
	case err = <-dispatched:
		cancelRun()
		_ = srv.Close()
		return fmt.Errorf("dispatcher: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down: finishing in-flight requests")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.CIBA.LongPoll+10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		log.Warn("shutdown", slog.Any("error", err))
	}
	if a.Parking != nil {
		if err := a.Parking.Wait(shutdownCtx); err != nil {
			log.Warn("shutdown: parked long polls not all answered", slog.Any("error", err))
		}
	}
	cancelRun()
	<-dispatched
	log.Info("stopped")
	return nil
}

// newLogger builds the slog logger the config asks for.
func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if cfg.Log.Format == "json" {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(httpapi.LogHandler(h))
}
