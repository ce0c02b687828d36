package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/admin"
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
func cmdRequests(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError{errors.New("want list, show ID or cancel ID")}
	}
	var (
		path, client, state string
		asJSON, full        bool
	)
	define := func(fs *flag.FlagSet) {
		fs.StringVar(&path, "config", "", "config file (YAML), the one the server runs with")
		fs.BoolVar(&asJSON, "json", false, "print JSON (whole ids) instead of a table")
		fs.BoolVar(&full, "full", false, "print whole auth_req_ids instead of their first 12 characters")
	}
	sub := args[0]
	var id string
	switch sub {
	case "list":
		pos, err := parseArgs("requests list", args[1:], stderr, func(fs *flag.FlagSet) {
			define(fs)
			fs.StringVar(&client, "client", "", "only the requests of this client_id")
			fs.StringVar(&state, "state", "", "only requests in this state: pending, approved, denied, expired or redeemed")
		})
		if err != nil {
			return err
		}
		if len(pos) > 0 {
			return usageError{fmt.Errorf("unexpected argument %q", pos[0])}
		}
		if err := (admin.Filter{State: ciba.Status(state)}).Validate(); err != nil {
			return usageError{err}
		}
	case "show", "cancel":
		pos, err := parseArgs("requests "+sub, args[1:], stderr, define)
		if err != nil {
			return err
		}
		if len(pos) != 1 {
			return usageError{fmt.Errorf("want one auth_req_id (or a prefix of at least %d characters)", admin.MinPrefix)}
		}
		id = pos[0]
	default:
		return usageError{fmt.Errorf("unknown subcommand %q: want list, show or cancel", sub)}
	}
	if path == "" {
		return usageError{errors.New("--config FILE is required")}
	}
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	reqs, closeReqs, err := openRequests(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeReqs()

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
	return admin.WriteRequest(stdout, r, full)
}

// cmdClients runs `cibaproxy clients list`: the clients of the config,
// without secrets.
func cmdClients(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "list" {
		return usageError{errors.New("want list")}
	}
	var path string
	var asJSON bool
	pos, err := parseArgs("clients list", args[1:], stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&path, "config", "", "config file (YAML)")
		fs.BoolVar(&asJSON, "json", false, "print JSON instead of a table")
	})
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", pos[0])}
	}
	if path == "" {
		return usageError{errors.New("--config FILE is required")}
	}
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	list := admin.Clients(cfg.Clients)
	if asJSON {
		return admin.WriteJSON(stdout, admin.ClientsJSON(list))
	}
	return admin.WriteClients(stdout, list)
}

// parseArgs parses flags that may come before and after positional
// arguments (`show ID --config F` as well as `show --config F ID`) and
// returns the positional ones. An argument that starts with '-' but names
// no flag of the command is positional: auth_req_ids are base64url and may
// start with '-' (`cancel -GPZw…`); `--` ends the flags as usual.
func parseArgs(name string, args []string, stderr io.Writer, define func(*flag.FlagSet)) ([]string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	define(fs)
	var pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return append(pos, args[i+1:]...), nil
		case len(a) < 2 || a[0] != '-' || notAFlag(fs, a):
			pos = append(pos, a)
		default:
			// One flag at a time, with its value when it takes one, so
			// that an id after it is not parsed as a flag.
			n := 1
			if takesValue(fs, a) && i+1 < len(args) {
				n = 2
			}
			if err := fs.Parse(args[i : i+n]); err != nil {
				return nil, usageError{err}
			}
			i += n - 1
		}
	}
	return pos, nil
}

// takesValue reports whether the flag a is one of fs's that takes its
// value from the next argument (not -name=value, not a boolean).
func takesValue(fs *flag.FlagSet, a string) bool {
	name := strings.TrimPrefix(a[1:], "-")
	if strings.Contains(name, "=") {
		return false
	}
	f := fs.Lookup(name)
	if f == nil {
		return false
	}
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return !ok || !b.IsBoolFlag()
}

// notAFlag reports whether a, which flag.Parse would take for a flag, is
// none of fs's (nor -h/-help): a positional argument that starts with '-'.
func notAFlag(fs *flag.FlagSet, a string) bool {
	if len(a) < 2 || a[0] != '-' || a == "--" {
		return false
	}
	name := strings.TrimPrefix(a[1:], "-")
	name, _, _ = strings.Cut(name, "=")
	return name != "h" && name != "help" && fs.Lookup(name) == nil
}

// openRequests returns the requests of the config's store and a function
// that releases them.
func openRequests(ctx context.Context, cfg *config.Config) (admin.Requests, func(), error) {
	switch cfg.Store.Type {
	case config.StoreRedis:
		// Every instance opens the shared store; so does the command.
		st, err := openStore(ctx, cfg)
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
	sock := admin.SocketPath(path)
	c := admin.NewClient(sock)
	pctx, cancel := context.WithTimeout(ctx, adminPingTimeout)
	perr := c.Ping(pctx)
	cancel()
	if perr == nil {
		return c, func() {}, nil
	}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("no database at %s (store.path): no server with this configuration has run here", path)
	}
	st, err := embedded.Open(ctx, path, embedded.WithLockTimeout(adminLockTimeout))
	if err != nil {
		return nil, nil, fmt.Errorf("%w; and no server answers on its admin socket (%w): is the server running as another user, or without the admin socket (see its log)?", err, perr)
	}
	return &admin.Local{Store: st}, func() { _ = st.Close() }, nil
}
