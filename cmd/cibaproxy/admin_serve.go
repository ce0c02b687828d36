package main

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/admin"
)

// startAdmin serves the admin API of a on the admin socket of the embedded
// database at dbPath (replacing a stale socket file) and returns the function
// that stops it and removes the file. A socket that cannot be created is
// logged, not fatal: the server works without it, only the requests commands
// cannot reach it.
func startAdmin(dbPath string, a *app, log *slog.Logger) (stop func()) {
	path := admin.SocketPath(dbPath)
	ln, err := admin.Listen(path)
	if err != nil {
		log.Error("admin socket not started: the requests commands cannot reach this server", slog.Any("error", err))
		return func() {}
	}
	srv := &http.Server{
		Handler:           admin.Handler(&admin.Local{Store: a.store, Deny: a.service.Deny}, log),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	go func() { _ = srv.Serve(ln) }()
	log.Info("admin socket listening", slog.String("path", path))
	// Closing the listener removes the socket file; srv.Close closes it too,
	// but only once Serve has started.
	return func() { _ = srv.Close(); _ = ln.Close() }
}
