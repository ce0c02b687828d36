package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/admin"
	"github.com/cibaproxy/cibaproxy/internal/app"
	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/config"
	"github.com/cibaproxy/cibaproxy/internal/store/embedded"
)

// The operator commands: `requests list|show|cancel` and `clients list`.
// They read the same config as serve. On the redis store they open the store
// like any instance; on the embedded store they ask the running server
// through its admin socket, or open the file when no server runs.

const (
	// adminPingTimeout bounds the check whether a server answers on the
	// admin socket.
	adminPingTimeout = 5 * time.Second
	// adminLockTimeout is how long the commands wait for the database file
	// when no server answers on the socket.
	adminLockTimeout = 500 * time.Millisecond
)

// cmdRequests runs `cibaproxy requests list|show|cancel`.
func cmdRequests(ctx context.Context, args []string, c cmdIO) error {
	sub, err := c.group("requests", args)
	if err != nil {
		return err
	}
	name := "requests " + sub
	var (
		path, client, state string
		asJSON, full        bool
	)
	define := func(fs *flag.FlagSet) {
		fs.StringVar(&path, "config", "", "config `file` (YAML), the one the server runs with")
		fs.BoolVar(&asJSON, "json", false, "print JSON (whole ids) instead of a table")
		if sub != "cancel" { // cancel prints the whole id
			fs.BoolVar(&full, "full", false, "print whole auth_req_ids instead of their first 12 characters")
		}
	}
	var id string
	switch sub {
	case "list":
		if err := c.flags(name, args[1:], func(fs *flag.FlagSet) {
			define(fs)
			fs.StringVar(&client, "client", "", "only the requests of this client_`id`")
			fs.StringVar(&state, "state", "", "only requests in this `state`: pending, approved, denied, expired or redeemed")
		}); err != nil {
			return err
		}
		if err := (admin.Filter{State: ciba.Status(state)}).Validate(); err != nil {
			return usageError{err, name}
		}
	default: // show, cancel
		pos, err := c.parseArgs(name, args[1:], define)
		if err != nil {
			return err
		}
		if len(pos) != 1 {
			for _, p := range pos {
				if len(pos) > 1 && strings.HasPrefix(p, "--") {
					return usageError{fmt.Errorf("unknown flag %s (or, if it is one, a second ID: want one)", p), name}
				}
			}
			return usageError{fmt.Errorf("want one ID: an auth_req_id, or a prefix of at least %d characters", admin.MinPrefix), name}
		}
		id = pos[0]
	}
	cfg, err := loadAdminConfig(name, path, needStore...)
	if err != nil {
		return err
	}
	reqs, closeReqs, err := openRequests(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeReqs()
	stdout := c.stdout

	switch sub {
	case "list":
		list, err := reqs.List(ctx, admin.Filter{Client: client, State: ciba.Status(state)})
		if err != nil {
			return err
		}
		if asJSON {
			return admin.WriteJSON(stdout, admin.ListJSON(list))
		}
		return admin.WriteList(stdout, list, full)
	case "show":
		r, err := reqs.Show(ctx, id)
		if err != nil {
			return err
		}
		if asJSON {
			return admin.WriteJSON(stdout, r)
		}
		return admin.WriteRequest(stdout, r, full)
	}
	r, err := reqs.Cancel(ctx, id)
	if err != nil {
		return err
	}
	if asJSON {
		return admin.WriteJSON(stdout, r)
	}
	fmt.Fprintf(stdout, "cancelled: the request is denied (%q)", admin.CancelReason)
	if r.ClientNotice.Due {
		fmt.Fprintf(stdout, "; the %s client will be told (client_notice)", r.Mode)
	}
	fmt.Fprintln(stdout)
	return admin.WriteRequest(stdout, r, true)
}

// cmdClients runs `cibaproxy clients list`: the clients of the config,
// without secrets.
func cmdClients(args []string, c cmdIO) error {
	sub, err := c.group("clients", args)
	if err != nil {
		return err
	}
	name := "clients " + sub
	var path string
	var asJSON bool
	if err := c.flags(name, args[1:], func(fs *flag.FlagSet) {
		fs.StringVar(&path, "config", "", "config `file` (YAML)")
		fs.BoolVar(&asJSON, "json", false, "print JSON instead of a table")
	}); err != nil {
		return err
	}
	cfg, err := loadAdminConfig(name, path, needClients...)
	if err != nil {
		return err
	}
	list := admin.Clients(cfg.Clients)
	if asJSON {
		return admin.WriteJSON(c.stdout, admin.ClientsJSON(list))
	}
	return admin.WriteClients(c.stdout, list)
}

// openRequests returns the requests of the config's store and a function
// that releases them.
func openRequests(ctx context.Context, cfg *config.Config) (admin.Requests, func(), error) {
	switch cfg.Store.Type {
	case config.StoreRedis:
		// Every instance opens the shared store; so does the command.
		st, err := app.OpenStore(ctx, cfg)
		if err != nil {
			return nil, nil, err
		}
		return &admin.Local{Store: st}, func() { _ = st.Close() }, nil
	case config.StoreEmbedded:
		return openEmbedded(ctx, cfg.Store.Path)
	}
	return nil, nil, fmt.Errorf("store.type %q: the requests live inside the server process; the requests commands need the embedded or redis store", cfg.Store.Type)
}

// openEmbedded asks the server on the admin socket of the database at path,
// or, when none answers, opens the file itself (the server is stopped).
func openEmbedded(ctx context.Context, path string) (admin.Requests, func(), error) {
	c, st, err := serverOrFile(ctx, path, "no server with this configuration has run here",
		"is the server running as another user, or without the admin socket (see its log)?")
	if err != nil {
		return nil, nil, err
	}
	if c != nil {
		return c, func() {}, nil
	}
	return &admin.Local{Store: st}, func() { _ = st.Close() }, nil
}

// serverOrFile is what the operator commands act on for the embedded
// database at path: the running server's admin client when one answers on
// its socket, else the database file itself, opened (the server is
// stopped); exactly one of the two is set. noFile says why there is no
// database file, hint what to check when no server answers and the file is
// locked.
func serverOrFile(ctx context.Context, path, noFile, hint string) (*admin.Client, *embedded.Store, error) {
	c := admin.NewClient(admin.SocketPath(path))
	pctx, cancel := context.WithTimeout(ctx, adminPingTimeout)
	perr := c.Ping(pctx)
	cancel()
	if perr == nil {
		return c, nil, nil
	}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("no database at %s (store.path): %s", path, noFile)
	}
	st, err := embedded.Open(ctx, path, embedded.WithLockTimeout(adminLockTimeout))
	if err != nil {
		if hint != "" {
			return nil, nil, fmt.Errorf("%w; and no server answers on its admin socket (%w): %s", err, perr, hint)
		}
		return nil, nil, fmt.Errorf("%w; and no server answers on its admin socket (%w)", err, perr)
	}
	return nil, st, nil
}
