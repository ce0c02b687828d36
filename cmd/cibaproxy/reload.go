package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"reflect"
	"slices"
	"strings"
	"syscall"

	"github.com/cibaproxy/cibaproxy/internal/app"
	"github.com/cibaproxy/cibaproxy/internal/config"
)

// Reloading the clients without a restart. On SIGHUP the server reads its
// configuration file again and validates all of it (config.Load). If the
// file is valid, the clients it lists replace the ones in force at once:
// requests under way finish with the clients they started with. The
// authorization_details types are put in force with them, their schema
// files compiled and their templates parsed again by config.Load: all of
// them at once, or, when one file fails, none (the file is named in the
// problem logged). The TLS server certificate and the client CAs are read
// again too (tlsreload.go). Nothing else is applied: a changed setting
// outside clients, authorization_details and tls is logged as needing a
// restart. If the file is not valid, every problem is logged and the
// clients, types and certificate in force stay.
//
// With the oidc and ciba upstreams each client also has credentials at the
// upstream, which the upstream takes at start only: a reload that adds or
// removes such a client, or changes its upstream credentials, is refused
// (logged) and needs a restart; other changes of those clients (secrets,
// delivery mode, notification endpoint, keys…) are applied.

// watchReload reloads the clients of a from path on every SIGHUP, until
// the returned stop is called. listen is the --listen override, or "".
// cert is the TLS server certificate in force, nil without TLS.
func watchReload(ctx context.Context, path, listen string, a *app.App, cert *serverCert, log *slog.Logger) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		defer close(done)
		running := a.Config // owned by this goroutine from here on
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				cfg, err := reloadClients(ctx, a, cert, running, path, listen, log)
				if err != nil {
					log.Error("reload: the clients in force are kept, and the authorization_details types and server certificate", slog.Any("error", err))
					continue
				}
				running = cfg
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		cancel()
		<-done
	}
}

// reloadClients reads the configuration at path and, if it is valid, puts
// its clients in force and returns the configuration now running: the
// settings of running with the new clients. It logs what changed. listen
// is the --listen override, or "". The clients go into a, the certificate
// into cert (nil without TLS). Calls must not overlap.
func reloadClients(ctx context.Context, a *app.App, cert *serverCert, running *config.Config, path, listen string, log *slog.Logger) (*config.Config, error) {
	log.Info("reload: reading the configuration", slog.String("config", path))
	cfg, err := config.Load(path)
	if err != nil {
		if ps, ok := errors.AsType[config.Problems](err); ok {
			// One line per problem, so each is found in the log; problem
			// messages never quote a secret.
			for _, p := range ps {
				log.Error("reload: configuration problem", slog.String("problem", p.String()))
			}
			return nil, fmt.Errorf("%s has %d problem(s)", path, len(ps))
		}
		return nil, err
	}
	if listen != "" {
		cfg.Listen = listen
	}
	if cert != nil {
		switch changed, err := cert.reload(&cfg.TLS); {
		case err != nil:
			log.Error("reload: the server certificate in force is kept", slog.Any("error", err))
		case changed:
			log.Info("reload: server certificate replaced; new connections get it", certAttrs(cfg.TLS.Certificate)...)
		}
	}
	if running.Upstream.Type != config.UpstreamLocal {
		if err := sameUpstreamCredentials(running.Clients, cfg.Clients); err != nil {
			return nil, fmt.Errorf("upstream %s: %w", running.Upstream.Type, err)
		}
	}
	// The assertion checks (issuer, the upstream's audiences), failure
	// counts and bcrypt slots stay the running server's.
	if err := a.ReloadClients(ctx, cfg); err != nil {
		return nil, err
	}

	added, removed, changed := diffClients(running.Clients, cfg.Clients)
	log.Info("reload: clients reloaded", slog.Int("clients", len(cfg.Clients)),
		slog.String("added", strings.Join(added, ",")), slog.String("removed", strings.Join(removed, ",")),
		slog.String("changed", strings.Join(changed, ",")))
	if types := cfg.AuthorizationDetails.TypeNames(); len(types) > 0 || len(running.AuthorizationDetails.Types) > 0 {
		log.Info("reload: authorization_details types reloaded, schemas compiled and templates parsed again",
			slog.String("types", strings.Join(types, ",")))
	}
	after := cfg
	if running.TLS.Enabled() == cfg.TLS.Enabled() {
		// The server certificate and the client CAs were put in force
		// above and with the clients: not a setting that needs a restart.
		c := *cfg
		c.TLS = running.TLS
		after = &c
	}
	if diff := changedSettings(running, after); len(diff) > 0 {
		log.Warn("reload: only the clients, authorization_details and tls are reloaded; restart to apply the other changed settings",
			slog.String("settings", strings.Join(diff, ",")))
	}
	// Later reloads compare with the clients and types now in force; the
	// other settings in force are still those of the start.
	next := *running
	next.Clients = cfg.Clients
	next.AuthorizationDetails = cfg.AuthorizationDetails
	return &next, nil
}

// sameUpstreamCredentials checks that the clients have the same
// credentials at the upstream before and after.
func sameUpstreamCredentials(before, after []config.Client) error {
	creds := func(cs []config.Client) map[string]config.UpstreamCredentials {
		m := make(map[string]config.UpstreamCredentials, len(cs))
		for i := range cs {
			m[cs[i].ID] = cs[i].Credentials()
		}
		return m
	}
	b, a := creds(before), creds(after)
	var ids []string
	for id, cb := range b {
		if ca, ok := a[id]; !ok || ca != cb {
			ids = append(ids, id)
		}
	}
	for id := range a {
		if _, ok := b[id]; !ok {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	slices.Sort(ids)
	return fmt.Errorf("clients %s are added, removed or have other upstream credentials; the upstream takes them at start: restart to apply",
		strings.Join(ids, ", "))
}

// diffClients returns the client_ids added, removed and changed, sorted.
func diffClients(before, after []config.Client) (added, removed, changed []string) {
	b := make(map[string]*config.Client, len(before))
	for i := range before {
		b[before[i].ID] = &before[i]
	}
	seen := make(map[string]bool, len(after))
	for i := range after {
		c := &after[i]
		seen[c.ID] = true
		switch old, ok := b[c.ID]; {
		case !ok:
			added = append(added, c.ID)
		case !reflect.DeepEqual(old, c):
			changed = append(changed, c.ID)
		}
	}
	for id := range b {
		if !seen[id] {
			removed = append(removed, id)
		}
	}
	slices.Sort(added)
	slices.Sort(removed)
	slices.Sort(changed)
	return added, removed, changed
}

// changedSettings returns the YAML names of the top-level settings other
// than clients and authorization_details (both reloaded) that differ
// between before and after.
func changedSettings(before, after *config.Config) []string {
	vb, va := reflect.ValueOf(before).Elem(), reflect.ValueOf(after).Elem()
	var out []string
	for i := range vb.NumField() {
		f := vb.Type().Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" || name == "clients" || name == "authorization_details" {
			continue
		}
		if !reflect.DeepEqual(vb.Field(i).Interface(), va.Field(i).Interface()) {
			out = append(out, name)
		}
	}
	return out
}
