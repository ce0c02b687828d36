// Package app wires cibaproxy: from a validated configuration it builds one
// running instance, the store, the signing and encryption keys, the client
// registry, the upstream, the channel and notifier, the ciba service, the
// HTTP handlers, the metrics and the tracing, each from the package that
// owns it. That is its one job: every decision lives in those packages, and
// what the process does around an instance (flags, signals, listeners,
// reloading the configuration file, the admin socket) lives in
// cmd/cibaproxy. cmd/cibaproxy, bench/memfill and this package's test all
// build their instance here: there is one wiring.
package app

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/authzdetails"
	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/config"
	"github.com/cibaproxy/cibaproxy/internal/httpapi"
	"github.com/cibaproxy/cibaproxy/internal/jose"
	"github.com/cibaproxy/cibaproxy/internal/keys"
	"github.com/cibaproxy/cibaproxy/internal/limit"
	"github.com/cibaproxy/cibaproxy/internal/tracing"
)

// Options are what the callers of New vary; the zero value is what a
// server wants, bar the logger.
type Options struct {
	// Logger receives the instance's logs; nil discards them.
	Logger *slog.Logger
	// Now is the clock of the ciba service, of the HTTP endpoints (their
	// per-client limits among them) and of the request counts in the
	// metrics; time.Now when nil.
	Now func() time.Time
	// Version is the version reported in the traces' service.version.
	Version string
	// Store, when set, is used instead of the store cfg names (store.*),
	// which is then not opened: the benchmarks measure a request on the
	// in-memory store this way. The instance owns it and closes it in
	// Close. A *redis.Store shares the abuse limits, as configured.
	Store ciba.Store
}

// App is one wired instance. Its handlers serve at once; Run runs its
// background work (the deliveries and relays, the key reloads) until the
// context ends. Close releases the store; Tracing.Shutdown flushes the
// spans.
type App struct {
	// Config is the configuration the instance was built from.
	Config *config.Config
	// Service is the ciba service behind the handlers.
	Service *ciba.Service
	// Handler serves the OpenID endpoints, the approval and device pages,
	// health and readiness, and /metrics with metrics.listen: main.
	Handler http.Handler
	// Parking holds the long polls of Handler with their connections
	// parked (httpapi.Parking) when long polling is on; nil otherwise. The
	// server serving Handler must also run Parking.Serve, Release it on
	// shutdown and Wait for it after.
	Parking *httpapi.Parking
	// Telemetry serves /metrics, /healthz and /readyz, for a listener of
	// their own (metrics.listen an address); nil otherwise.
	Telemetry http.Handler
	// Store is the store, wrapped by the metrics.
	Store ciba.Store
	// Keys are the issuer's signing keys, reloaded from the store by Run.
	Keys *keys.Live
	// Tracing exports spans; Shutdown flushes them.
	Tracing *tracing.Tracing
	// HashSlots bound the bcrypt checks run at once, of client secrets,
	// passwords and user codes alike (hashSlots); their counts (Runs,
	// Peak, Busy) are the tests' view of that bound.
	HashSlots *limit.Slots

	log *slog.Logger
	// clients and replay are what ReloadClients needs.
	clients registry
	replay  jose.Replay
}

// Close closes the store.
func (a *App) Close() error { return a.Store.Close() }

// Run runs the background work of the instance until ctx ends: the ciba
// service's dispatcher (deliveries, relays, expiries) and, for keys kept in
// the store, the reload of the key set every keys.ReloadEvery, so that
// rotations by other instances or by commands are seen. It returns the
// dispatcher's error, once both have stopped.
func (a *App) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	if a.Keys.Rotatable() {
		wg.Go(func() {
			a.Keys.Run(ctx, keys.ReloadEvery, func(err error) {
				a.log.Warn("signing keys: reading the key set failed; the keys in force are kept", slog.Any("error", err))
			})
		})
	}
	err := a.Service.Run(ctx)
	cancel()
	wg.Wait()
	return err
}

// ReloadClients puts in force the clients of cfg, a configuration
// config.Load has validated, and its authorization_details types (their
// schemas, bounds and templates, which Load compiled and parsed): requests
// under way finish with the clients they started with, a bc-authorize
// checks its details against the types in force when it began, and an
// approval page renders with the templates in force when it began. The TLS
// client CAs and mtls_proxy of cfg come with them; the assertion checks
// (issuer, the upstream's audiences), the failure counts and the bcrypt
// slots stay the running instance's. Nothing else of cfg is applied. On
// error nothing is. Calls must not overlap.
func (a *App) ReloadClients(ctx context.Context, cfg *config.Config) error {
	reg, err := newRegistry(ctx, cfg, a.replay)
	if err != nil {
		return err
	}
	reg.AssertionPolicy = a.clients.Current().AssertionPolicy
	reg.Guard = a.clients.Current().Guard
	// The types first: a client the reload allows a new type sends it
	// once the type is in force.
	a.clients.details.Store(authzdetails.Set{Registry: cfg.AuthorizationDetails.Registry, Templates: cfg.AuthorizationDetails.Templates})
	a.clients.Swap(reg)
	return nil
}

// New builds the instance cfg describes; cfg must have been validated
// (config.Load). Stores, keys and secrets generated on first start are
// kept in the store. On error nothing is left open. The steps, in order,
// are the methods of builder (build.go).
func New(ctx context.Context, cfg *config.Config, opts Options) (a *App, err error) {
	b := newBuilder(cfg, opts)
	if err := b.openStore(ctx); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			b.release(ctx)
		}
	}()
	for _, step := range []func(context.Context) error{
		b.openTracing, b.loadSecrets, b.buildClients, b.buildUpstream, b.buildService, b.buildServer,
	} {
		if err := step(ctx); err != nil {
			return nil, err
		}
	}
	return b.app(), nil
}

// routes are the patterns httpapi serves, naming the server spans
// ("POST /token"): a span is never named by its path, which may hold an
// approval id.
var routes = []string{
	"GET " + httpapi.PathDiscovery, "GET " + httpapi.PathJWKS, "GET " + httpapi.PathHealth, "GET " + httpapi.PathReady,
	"GET " + httpapi.PathMetrics, "POST " + httpapi.PathBCAuthz, "POST " + httpapi.PathToken, "POST " + httpapi.PathCallback,
	"POST " + httpapi.PathUpstreamPing, "GET " + httpapi.PathApprove + "{id}", "POST " + httpapi.PathApprove + "{id}",
	"GET " + httpapi.PathApproveCallback, "POST " + httpapi.PathDeviceAuthorization, "GET " + httpapi.PathDevice,
	"POST " + httpapi.PathDevice, "POST " + httpapi.PathIntrospect, "POST " + httpapi.PathRevoke,
	"GET " + httpapi.PathUserinfo, "POST " + httpapi.PathUserinfo,
}

// tracedClients records the authenticated client on the request's span.
type tracedClients struct{ httpapi.Authenticator }

func (t tracedClients) Authenticate(ctx context.Context, r *http.Request, form url.Values, endpoint string) (*ciba.Client, error) {
	c, err := t.Authenticator.Authenticate(ctx, r, form, endpoint)
	if c != nil {
		tracing.SetClient(ctx, c.ID)
	}
	return c, err
}
