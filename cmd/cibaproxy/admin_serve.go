package main

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/admin"
	"github.com/cibaproxy/cibaproxy/internal/app"
	"github.com/cibaproxy/cibaproxy/internal/keys"
)

// startAdmin serves the admin API of a on the admin socket of the embedded
// database at dbPath (replacing a stale socket file) and returns the function
// that stops it and removes the file. A socket that cannot be created is
// logged, not fatal: the server works without it, only the requests commands
// cannot reach it.
func startAdmin(dbPath string, a *app.App, log *slog.Logger) (stop func()) {
	path := admin.SocketPath(dbPath)
	ln, err := admin.Listen(path)
	if err != nil {
		log.Error("admin socket not started: the requests commands cannot reach this server", slog.Any("error", err))
		return func() {}
	}
	srv := &http.Server{
		Handler:           adminMux(a, log),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	go func() { _ = srv.Serve(ln) }()
	log.Info("admin socket listening", slog.String("path", path))
	// Closing the listener removes the socket file; srv.Close closes it too,
	// but only once Serve has started.
	return func() { _ = srv.Close(); _ = ln.Close() }
}

// adminMux is the admin API of a: the requests, the users' passkeys, and
// the rotation of the signing keys (which the server reads back at once).
func adminMux(a *app.App, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", admin.Handler(&admin.Local{Store: a.Store, Deny: a.Service.Deny}, log))
	mux.Handle("/v1/users", admin.UsersHandler(&admin.LocalUsers{Store: a.Store, Config: a.Config}, log))
	mux.Handle("/v1/users/", admin.UsersHandler(&admin.LocalUsers{Store: a.Store, Config: a.Config}, log))
	mux.Handle("POST /v1/keys/", admin.KeysHandler(func(ctx context.Context, ahead time.Duration) (*keys.Rotation, error) {
		return a.Keys.Rotate(ctx, app.RotatePolicy(a.Config, ahead))
	}, log))
	return mux
}
