package main

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/admin"
	"github.com/cibaproxy/cibaproxy/internal/app"
	"github.com/cibaproxy/cibaproxy/internal/config"
	"github.com/cibaproxy/cibaproxy/internal/keys"
)

// `cibaproxy keys rotate`: a new signing key, published at once, signing
// after --publish-ahead, the old key published until its tokens expired
// (see package keys; the policy is app.RotatePolicy). On the redis store the command writes the new key
// set and every instance reads it within keys.ReloadEvery; on the
// embedded store the running server does it through its admin socket and
// reads it at once (or, with no server running, the command writes the
// file itself).

// cmdKeys runs `cibaproxy keys rotate`.
func cmdKeys(ctx context.Context, args []string, c cmdIO) error {
	sub, err := c.group("keys", args)
	if err != nil {
		return err
	}
	name := "keys " + sub
	stdout := c.stdout
	var (
		path   string
		ahead  time.Duration
		asJSON bool
	)
	if err := c.flags(name, args[1:], func(fs *flag.FlagSet) {
		fs.StringVar(&path, "config", "", "config `file` (YAML), the one the server runs with")
		fs.DurationVar(&ahead, "publish-ahead", keys.DefaultPublishAhead,
			fmt.Sprintf("how long the new key is published before it signs (at least %v)", keys.MinPublishAhead))
		fs.BoolVar(&asJSON, "json", false, "print JSON")
	}); err != nil {
		return err
	}
	if ahead < keys.MinPublishAhead {
		return usageError{fmt.Errorf("--publish-ahead must be at least %v: clients cache the JWKS for 300s and instances read the keys every %v", keys.MinPublishAhead, keys.ReloadEvery), name}
	}
	cfg, err := loadAdminConfig(name, path, needKeys...)
	if err != nil {
		return err
	}
	if cfg.Tokens.SigningKeyFile != "" {
		return fmt.Errorf("tokens.signing_key_file is set (%s): those keys are the operator's to rotate. Put the new key in the file after the current one (all keys in the file are published, the first signs), restart, wait at least 5 minutes (the JWKS cache), move the new key first and restart; drop the old key once its tokens have expired (%v)",
			cfg.Tokens.SigningKeyFile, max(cfg.Tokens.AccessTokenTTL, cfg.Tokens.IDTokenTTL))
	}
	rot, err := rotate(ctx, cfg, ahead)
	if err != nil {
		return err
	}
	if want := app.SigningAlgs(cfg); cfg.FAPI.CIBA && !slices.Contains(want.Allowed, rot.New.Alg) {
		// The running server rotated with its own configuration.
		return fmt.Errorf("the running server, whose configuration does not have fapi.ciba, added key %s signing %s: stop it and run this command again, which then adds a %s key with this configuration (FAPI 1.0 Advanced §8.6)",
			rot.New.KeyID, rot.New.Alg, want.Generate)
	}
	if asJSON {
		return admin.WriteJSON(stdout, rot)
	}
	fmt.Fprintf(stdout, "new signing key %s: published now, signs from %s\n", rot.New.KeyID, rot.New.NotBefore.Local().Format(time.RFC3339))
	for _, k := range rot.Keys[1:] {
		fmt.Fprintf(stdout, "key %s: signs until %s, published until %s\n", k.KeyID,
			rot.New.NotBefore.Local().Format(time.RFC3339), k.Until.Local().Format(time.RFC3339))
	}
	if cfg.Store.Type == config.StoreRedis {
		fmt.Fprintf(stdout, "every instance reads the new key set within %v\n", keys.ReloadEvery)
	}
	return nil
}

// rotate rotates the keys of cfg's store: through the running server's
// admin socket for the embedded store, else in the store itself.
func rotate(ctx context.Context, cfg *config.Config, ahead time.Duration) (*keys.Rotation, error) {
	p := app.RotatePolicy(cfg, ahead)
	switch cfg.Store.Type {
	case config.StoreRedis:
		st, err := app.OpenStore(ctx, cfg)
		if err != nil {
			return nil, err
		}
		defer st.Close()
		return keys.Rotate(ctx, st, p, time.Now())
	case config.StoreEmbedded:
		c, st, err := serverOrFile(ctx, cfg.Store.Path, "start the server once first", "")
		if err != nil {
			return nil, err
		}
		if c != nil {
			return c.RotateKeys(ctx, ahead)
		}
		defer st.Close()
		return keys.Rotate(ctx, st, p, time.Now())
	}
	return nil, fmt.Errorf("store.type %q: the keys live inside the server process and vanish with it; nothing to rotate", cfg.Store.Type)
}
