package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/admin"
	"github.com/cibaproxy/cibaproxy/internal/app"
	"github.com/cibaproxy/cibaproxy/internal/config"
)

// `cibaproxy users list|enroll|passkeys remove|webpush list|webpush
// remove`: the local upstream's users, their passkeys (docs/passkeys.md)
// and their Web Push subscriptions (docs/webpush.md). Like the requests
// commands, they act on the store: on the redis store directly, on the
// embedded store through the running server's admin socket (or the file,
// the server stopped).

// isUserGroup reports whether name is a group of subcommands under users
// (users passkeys …, users webpush …) rather than a subcommand.
func isUserGroup(name string) bool {
	return name == "passkeys" || name == "webpush"
}

// cmdUsers runs `cibaproxy users …`.
func cmdUsers(ctx context.Context, args []string, c cmdIO) error {
	var sub string
	if len(args) > 0 && isUserGroup(args[0]) {
		s, err := c.group("users "+args[0], args[1:])
		if err != nil {
			return err
		}
		sub, args = args[0]+" "+s, args[1:]
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
		all    bool
	)
	define := func(fs *flag.FlagSet) {
		fs.StringVar(&path, "config", "", "config `file` (YAML), the one the server runs with")
		switch sub {
		case "passkeys remove":
		case "webpush remove":
			fs.BoolVar(&all, "all", false, "remove every subscription of USER (then give no ID)")
		default:
			fs.BoolVar(&asJSON, "json", false, "print JSON")
		}
	}
	want := map[string]int{"list": 0, "enroll": 1, "passkeys remove": 2, "webpush list": 1, "webpush remove": 2}[sub]
	pos, err := c.parseArgs(name, args[1:], define)
	if err != nil {
		return err
	}
	if all {
		want = 1
	}
	if path == "" {
		return usageError{errors.New("--config FILE is required"), name}
	}
	if len(pos) != want {
		// An id may start with '-', so a flag the command does not take
		// is a positional argument; one too many is most likely such a
		// flag.
		if i := slices.IndexFunc(pos, func(a string) bool { return strings.HasPrefix(a, "-") }); i >= 0 && len(pos) > want {
			return usageError{fmt.Errorf("unknown flag %s", pos[i]), name}
		}
		switch {
		case want == 0:
			return usageError{fmt.Errorf("unexpected argument %q", pos[0]), name}
		case sub == "webpush remove" && all:
			return usageError{errors.New("want USER only with --all"), name}
		case sub == "webpush remove":
			return usageError{errors.New("want USER and the subscription's ID (or --all)"), name}
		case want == 1:
			return usageError{errors.New("want one USER, a username of upstream.local.users"), name}
		}
		return usageError{errors.New("want USER and the passkey's ID"), name}
	}
	cfg, err := loadAdminConfig(name, path, needUsers...)
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
	case "webpush list":
		list, err := users.ListWebPush(ctx, pos[0])
		if err != nil {
			return err
		}
		if asJSON {
			return admin.WriteJSON(out, admin.WebPushJSON(list))
		}
		if len(list) == 0 {
			// Not a bare table header: say so, and how one is made.
			_, err := fmt.Fprintf(out, "%s has no Web Push subscriptions (a browser subscribes from the Approved page after a password approval: docs/webpush.md)\n", pos[0])
			return err
		}
		return admin.WriteWebPush(out, list)
	case "webpush remove":
		if all {
			n, err := users.RemoveAllWebPush(ctx, pos[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "removed %s of %s\n", plural(n, "Web Push subscription", "Web Push subscriptions"), pos[0])
			return nil
		}
		s, err := users.RemoveWebPush(ctx, pos[0], pos[1])
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "removed Web Push subscription %s (%s) of %s\n", s.ID, s.Host, pos[0])
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
	return nil, nil, fmt.Errorf("store.type %q: the passkeys and subscriptions live inside the server process and vanish with it; the users commands need the embedded or redis store", cfg.Store.Type)
}
