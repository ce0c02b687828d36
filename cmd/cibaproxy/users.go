package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/admin"
	"github.com/cibaproxy/cibaproxy/internal/app"
	"github.com/cibaproxy/cibaproxy/internal/config"
)

// `cibaproxy users list|enroll|passkeys remove`: the local upstream's users
// and their passkeys (docs/passkeys.md). Like the requests commands, they
// act on the store: on the redis store directly, on the embedded store
// through the running server's admin socket (or the file, the server
// stopped).

// cmdUsers runs `cibaproxy users …`.
func cmdUsers(ctx context.Context, args []string, c cmdIO) error {
	var sub string
	if len(args) > 0 && args[0] == "passkeys" {
		s, err := c.group("users passkeys", args[1:])
		if err != nil {
			return err
		}
		sub, args = "passkeys "+s, args[1:]
	} else {
		s, err := c.group("users", args)
		if err != nil {
			return err
		}
		sub = s
	}
	name := "users " + sub
	var (
		path   string
		asJSON bool
	)
	define := func(fs *flag.FlagSet) {
		fs.StringVar(&path, "config", "", "config `file` (YAML), the one the server runs with")
		if sub != "passkeys remove" {
			fs.BoolVar(&asJSON, "json", false, "print JSON")
		}
	}
	var pos []string
	want := map[string]int{"list": 0, "enroll": 1, "passkeys remove": 2}[sub]
	p, err := c.parseArgs(name, args[1:], define)
	if err != nil {
		return err
	}
	if path == "" {
		return usageError{errors.New("--config FILE is required"), name}
	}
	if pos = p; len(pos) != want {
		switch want {
		case 0:
			return usageError{fmt.Errorf("unexpected argument %q", pos[0]), name}
		case 1:
			return usageError{fmt.Errorf("want one USER, a username of upstream.local.users"), name}
		}
		return usageError{fmt.Errorf("want USER and the passkey's ID"), name}
	}
	cfg, err := loadConfig(name, path)
	if err != nil {
		return err
	}
	users, done, err := openUsers(ctx, cfg)
	if err != nil {
		return err
	}
	defer done()
	out := c.stdout
	switch sub {
	case "list":
		list, err := users.ListUsers(ctx)
		if err != nil {
			return err
		}
		if asJSON {
			return admin.WriteJSON(out, admin.UsersJSON(list))
		}
		return admin.WriteUsers(out, list)
	case "enroll":
		e, err := users.Enroll(ctx, pos[0])
		if err != nil {
			return err
		}
		if asJSON {
			return admin.WriteJSON(out, e)
		}
		fmt.Fprintf(out, "Send this link to %s. It adds a passkey once, and expires at %s (in %s):\n\n  %s\n\n",
			e.Username, e.Expires.Local().Format(time.RFC3339), time.Until(e.Expires).Round(time.Minute), e.URL)
		fmt.Fprintln(out, "Whoever opens it can add a passkey to this account: send it only to the user, over a channel you trust.")
		return nil
	}
	id, err := users.RemovePasskey(ctx, pos[0], pos[1])
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "removed passkey %s of %s\n", id, pos[0])
	return nil
}

// openUsers returns the users of cfg's store and a function that releases
// them.
func openUsers(ctx context.Context, cfg *config.Config) (admin.Users, func(), error) {
	switch cfg.Store.Type {
	case config.StoreRedis:
		st, err := app.OpenStore(ctx, cfg)
		if err != nil {
			return nil, nil, err
		}
		return &admin.LocalUsers{Store: st, Config: cfg}, func() { _ = st.Close() }, nil
	case config.StoreEmbedded:
		c, st, err := serverOrFile(ctx, cfg.Store.Path, "start the server once first",
			"is the server running as another user, or without the admin socket (see its log)?")
		if err != nil {
			return nil, nil, err
		}
		if c != nil {
			return c, func() {}, nil
		}
		return &admin.LocalUsers{Store: st, Config: cfg}, func() { _ = st.Close() }, nil
	}
	return nil, nil, fmt.Errorf("store.type %q: the passkeys live inside the server process and vanish with it; the users commands need the embedded or redis store", cfg.Store.Type)
}
