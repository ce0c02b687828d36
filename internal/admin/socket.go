package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/keys"
)

// The admin socket. A server on the embedded store holds the database file's
// lock, so the commands cannot open it while the server runs; the server
// answers them instead on a unix socket next to the file,
// SocketPath(store.path), mode 0600: whoever may read and write the database
// may administer, the same trust. The API is JSON over HTTP:
//
//	GET  /v1/ping                     204
//	GET  /v1/requests?client=&state=  {"requests": [Request…]}
//	GET  /v1/requests/{id}            Request
//	POST /v1/requests/{id}/cancel     Request
//	POST /v1/keys/rotate              keys.Rotation (see keys.go)
//
// and errors are {"error": CODE, "message": TEXT} with CODE one of
// not_found (404), ambiguous (409), not_pending (409), bad_request (400) or
// internal (500); the Client turns them back into this package's errors.

// SocketPath returns the admin socket of the embedded store at dbPath.
func SocketPath(dbPath string) string { return dbPath + ".admin.sock" }

// Listen creates the admin socket at path with mode 0600 and returns its
// listener, whose Close removes the file. The caller must have the exclusive
// right to path (the server holds the database lock), so a socket file found
// there is stale and is replaced; anything else there is an error. The socket
// is bound in a new private directory and moved into place once its mode is
// set, so nobody can connect in between.
func Listen(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("admin socket %s: a file that is not a socket is in the way", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("admin socket %s: remove the stale socket: %w", path, err)
		}
	}
	dir, err := os.MkdirTemp(filepath.Dir(path), ".admin-")
	if err != nil {
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	defer os.RemoveAll(dir)
	tmp := filepath.Join(dir, "s")
	ln, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	ul, ok := ln.(*net.UnixListener)
	if !ok {
		_ = ln.Close()
		return nil, fmt.Errorf("admin socket %s: listener is a %T", path, ln)
	}
	ul.SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, 0o600); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	l := &listener{Listener: ln, path: path}
	// Make sure clients can reach it: a path too long for a socket address
	// binds here (in the short private directory) but cannot be dialled.
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		_ = l.Close()
		return nil, fmt.Errorf("admin socket %s cannot be reached (a unix socket path has at most about 100 bytes): %w", path, err)
	}
	_ = c.Close()
	return l, nil
}

// listener removes its socket file when closed.
type listener struct {
	net.Listener
	path string
}

func (l *listener) Close() error {
	err := l.Listener.Close()
	if rerr := os.Remove(l.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) && err == nil {
		err = fmt.Errorf("admin socket: %w", rerr)
	}
	return err
}

// Handler serves the admin API on reqs. Cancels are logged to log.
func Handler(reqs Requests, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/ping", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /v1/requests", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		list, err := reqs.List(r.Context(), Filter{Client: q.Get("client"), State: ciba.Status(q.Get("state"))})
		answer(w, listBody{Requests: list}, err)
	})
	mux.HandleFunc("GET /v1/requests/{id}", func(w http.ResponseWriter, r *http.Request) {
		v, err := reqs.Show(r.Context(), r.PathValue("id"))
		answer(w, v, err)
	})
	mux.HandleFunc("POST /v1/requests/{id}/cancel", func(w http.ResponseWriter, r *http.Request) {
		v, err := reqs.Cancel(r.Context(), r.PathValue("id"))
		if err == nil {
			log.LogAttrs(r.Context(), slog.LevelInfo, "auth request cancelled by an operator",
				slog.String("client_id", v.ClientID), slog.String("subject", v.Subject))
		}
		answer(w, v, err)
	})
	return mux
}

type listBody struct {
	Requests []Request `json:"requests"`
}

type errorBody struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

// errorCodes maps the package's errors to the API's codes and statuses.
var errorCodes = []struct {
	err    error
	code   string
	status int
}{
	{ErrNotFound, "not_found", http.StatusNotFound},
	{ErrNoUser, "not_found", http.StatusNotFound},
	{ErrAmbiguous, "ambiguous", http.StatusConflict},
	{ErrNotPending, "not_pending", http.StatusConflict},
	{ErrBadRequest, "bad_request", http.StatusBadRequest},
	{keys.ErrNotRotatable, "not_rotatable", http.StatusConflict},
	{keys.ErrRotationRace, "conflict", http.StatusConflict},
}

func answer(w http.ResponseWriter, v any, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if err != nil {
		body, status := errorBody{Error: "internal", Message: err.Error()}, http.StatusInternalServerError
		for _, c := range errorCodes {
			if errors.Is(err, c.err) {
				body.Error, status = c.code, c.status
				break
			}
		}
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(body)
		return
	}
	_ = json.NewEncoder(w).Encode(v)
}

// Client is [Requests] through a server's admin socket.
type Client struct {
	path string
	hc   *http.Client
}

// Compile-time check.
var _ Requests = (*Client)(nil)

// NewClient returns a client of the admin socket at path. It connects on
// each call; bound calls with their context.
func NewClient(path string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		DisableKeepAlives: true,
	}
	return &Client{path: path, hc: &http.Client{Transport: tr}}
}

// Ping checks that a server answers on the socket.
func (c *Client) Ping(ctx context.Context) error {
	return c.do(ctx, http.MethodGet, "/v1/ping", nil)
}

// List implements [Requests].
func (c *Client) List(ctx context.Context, f Filter) ([]Request, error) {
	q := url.Values{}
	if f.Client != "" {
		q.Set("client", f.Client)
	}
	if f.State != "" {
		q.Set("state", string(f.State))
	}
	p := "/v1/requests"
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	var body listBody
	if err := c.do(ctx, http.MethodGet, p, &body); err != nil {
		return nil, err
	}
	return body.Requests, nil
}

// Show implements [Requests].
func (c *Client) Show(ctx context.Context, id string) (*Request, error) {
	var v Request
	if err := c.do(ctx, http.MethodGet, "/v1/requests/"+url.PathEscape(id), &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// Cancel implements [Requests].
func (c *Client) Cancel(ctx context.Context, id string) (*Request, error) {
	var v Request
	if err := c.do(ctx, http.MethodPost, "/v1/requests/"+url.PathEscape(id)+"/cancel", &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// do sends one call and decodes its answer into out (nil: none expected).
func (c *Client) do(ctx context.Context, method, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://cibaproxy-admin"+path, nil)
	if err != nil {
		return fmt.Errorf("admin socket %s: %w", c.path, err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		// The URL is made up; the cause (dial, read) is what tells.
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err
		}
		return fmt.Errorf("admin socket %s: %w", c.path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("admin socket %s: read the answer: %w", c.path, err)
	}
	if resp.StatusCode >= 300 {
		var e errorBody
		if json.Unmarshal(body, &e) != nil || e.Error == "" {
			return fmt.Errorf("admin socket %s: %s", c.path, resp.Status)
		}
		return &remoteError{code: e.Error, msg: e.Message}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("admin socket %s: decode the answer: %w", c.path, err)
	}
	return nil
}

// remoteError is an error the server answered, which unwraps to the
// package's error of its code.
type remoteError struct{ code, msg string }

func (e *remoteError) Error() string { return e.msg }

func (e *remoteError) Unwrap() error {
	for _, c := range errorCodes {
		if c.code == e.code {
			return c.err
		}
	}
	return nil
}
