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
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/clientauth"
	"github.com/cibaproxy/cibaproxy/internal/config"
	"github.com/cibaproxy/cibaproxy/internal/dpop"
	"github.com/cibaproxy/cibaproxy/internal/httpapi"
	"github.com/cibaproxy/cibaproxy/internal/jose"
	"github.com/cibaproxy/cibaproxy/internal/keys"
	"github.com/cibaproxy/cibaproxy/internal/metrics"
	"github.com/cibaproxy/cibaproxy/internal/notify"
	"github.com/cibaproxy/cibaproxy/internal/outbound"
	redisstore "github.com/cibaproxy/cibaproxy/internal/store/redis"
	"github.com/cibaproxy/cibaproxy/internal/tracing"
)

// Options are what the callers of New vary; the zero value is what a
// server wants, bar the logger.
type Options struct {
	// Logger receives the instance's logs; nil discards them.
	Logger *slog.Logger
	// Now is the clock of the ciba service and of the request counts in
	// the metrics; time.Now when nil.
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
	// Telemetry serves /metrics, /healthz and /readyz, for a listener of
	// their own (metrics.listen an address); nil otherwise.
	Telemetry http.Handler
	// Store is the store, wrapped by the metrics.
	Store ciba.Store
	// Keys are the issuer's signing keys, reloaded from the store by Run.
	Keys *keys.Live
	// Tracing exports spans; Shutdown flushes them.
	Tracing *tracing.Tracing

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
// config.Load has validated: requests under way finish with the clients
// they started with. The TLS client CAs and mtls_proxy of cfg come with
// them; the assertion checks (issuer, the upstream's audiences), the
// failure counts and the bcrypt slots stay the running instance's. Nothing
// else of cfg is applied. Calls must not overlap.
func (a *App) ReloadClients(ctx context.Context, cfg *config.Config) error {
	reg, err := newRegistry(ctx, cfg, a.replay)
	if err != nil {
		return err
	}
	reg.AssertionPolicy = a.clients.Current().AssertionPolicy
	reg.Guard = a.clients.Current().Guard
	a.clients.Swap(reg)
	return nil
}

// New builds the instance cfg describes; cfg must have been validated
// (config.Load). Stores, keys and secrets generated on first start are
// kept in the store. On error nothing is left open.
func New(ctx context.Context, cfg *config.Config, opts Options) (a *App, err error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	m := metrics.New()
	st := opts.Store
	if st == nil {
		if st, err = OpenStore(ctx, cfg); err != nil {
			return nil, err
		}
	}
	// With Redis the abuse limits are shared by all instances.
	shared, _ := st.(*redisstore.Store)
	newLimit := limitMaker(cfg, shared, m, log)
	st = m.Store(st)
	m.WatchRequests(st, now, 15*time.Second)
	defer func() {
		if err != nil {
			_ = st.Close()
		}
	}()
	tr, err := tracing.New(ctx, tracing.Config{
		Endpoint: cfg.Tracing.OTLPEndpoint, Insecure: cfg.Tracing.Insecure, SampleRatio: cfg.Tracing.SampleRatio,
		ServiceVersion: opts.Version, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = tr.Shutdown(context.WithoutCancel(ctx))
		}
	}()

	signer, err := keys.Open(ctx, st, cfg.Tokens.SigningKeyFile, nil, SigningAlgs(cfg))
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	if algs := signer.Algs(); cfg.FAPI.CIBA && !slices.Contains(keys.FAPIAlgs().Allowed, algs[0]) {
		// Switching to FAPI: the key in force was rotated out, but signs
		// until its successor takes over (keys.Open).
		log.Warn("fapi.ciba: tokens are signed with the previous key's algorithm until the key of the last `keys rotate` starts signing",
			slog.String("alg", algs[0]), slog.String("next_alg", algs[len(algs)-1]))
	}
	ring, err := sealRing(ctx, cfg, st, log)
	if err != nil {
		return nil, err
	}
	callbackKey, _, err := serverSecret(ctx, st, "callback-key", 32)
	if err != nil {
		return nil, err
	}
	csrfKey, _, err := serverSecret(ctx, st, "csrf-key", 32)
	if err != nil {
		return nil, err
	}

	replay := clientauth.NewStoreReplay(st, "jti")
	// Calls to URLs clients chose (notification endpoints, jwks_uri) are
	// held to the outbound policy against server-side request forgery.
	out := outbound.New(notifyTimeout, outbound.Guard(cfg.Outbound.Policy()))
	out.HTTPClient().Transport = tr.Transport("notify", out.HTTPClient().Transport)
	registry, err := buildClients(ctx, cfg, replay)
	if err != nil {
		return nil, err
	}
	auth := &clientauth.Authenticator{Registry: registry.Live, RequestObjects: jose.RequestObjectPolicy{
		Issuer:    cfg.Issuer,
		Audiences: []string{cfg.Issuer + httpapi.PathBCAuthz},
		Replay:    replay,
	}}

	var up *upstream
	switch cfg.Upstream.Type {
	case config.UpstreamOIDC:
		up, err = buildOIDC(ctx, cfg, registry, m, tr, log)
	case config.UpstreamCIBA:
		up, err = buildCIBA(ctx, cfg, registry, m, tr, log)
	default:
		up, err = buildLocal(cfg, st, signer, registry, log)
	}
	if err != nil {
		return nil, err
	}
	auth.RequestObjects.Audiences = append(auth.RequestObjects.Audiences, up.audiences...)
	registry.Current().AssertionPolicy.Audiences = up.audiences
	limits := httpLimits(cfg, newLimit)
	// One guard for every registry the clients are reloaded into (ReloadClients).
	registry.Current().Guard = clientGuard(cfg, limits, newLimit)

	chans, err := buildChannels(ctx, cfg, st, tr, log)
	if err != nil {
		return nil, err
	}
	if len(chans.list) == 0 && cfg.Upstream.Type != config.UpstreamCIBA && hasCIBAClients(cfg) {
		log.Warn("no channel configured (channels.webhook.url or channels.email): nobody is told of a new CIBA request, so nobody can approve one and each request expires; " +
			"configure one (docs/webhook.md, docs/email.md), or for the quick start set CIBAPROXY_WEBHOOK_URL or run make run")
	}
	validator, err := buildValidator(cfg, tr)
	if err != nil {
		return nil, fmt.Errorf("validation hook: %w", err)
	}
	devices := newDeviceClients(cfg)
	svc, err := ciba.NewService(ciba.Config{
		DefaultExpiry:     cfg.CIBA.DefaultExpiry,
		MaxExpiry:         cfg.CIBA.MaxExpiry,
		Interval:          cfg.CIBA.Interval,
		PollTolerance:     500 * time.Millisecond,
		LongPoll:          cfg.CIBA.LongPoll,
		ExpiredGrace:      cfg.CIBA.ExpiredGrace,
		BindingMessageMax: cfg.CIBA.BindingMessageMax,
		CallbackURL:       cfg.Issuer + httpapi.PathCallback,
		ApproveURL:        func(id string) string { return cfg.Issuer + httpapi.PathApprove + id },
		Scopes:            localScopes(cfg),
		DeliveryTimeout:   deliveryTimeout(cfg),
		SoleDispatcher:    cfg.Store.Type != config.StoreRedis,
		AuthzDetails:      cfg.AuthorizationDetails.Registry,
	}, ciba.Deps{
		Store:       st,
		Upstream:    up.Upstream,
		Relay:       up.relay,
		Minter:      up.minter,
		Sealer:      ring,
		Channels:    chans.list,
		Notifier:    notify.HTTP{Client: out},
		Clients:     devices.lookup(registry.Client),
		CallbackKey: callbackKey,
		Logger:      log,
		Observer:    m,
		UserLimit:   userLimit(cfg, newLimit),
		HintSubject: jose.UnverifiedHintName,
		Validator:   validator,
		Now:         opts.Now,
		Trace:       tr.TraceParent,
		StartSpan:   tr.StartSpan,

		// user_code guessing at bc-authorize (limits.user_code_failures_*).
		UserCodeFailures: userCodeFailures(cfg, newLimit),

		// validation.fail: open accepts a request the hook gives no verdict on.
		ValidationFailOpen: cfg.Validation.FailOpen(),
	})
	if err != nil {
		return nil, err
	}

	srv := &httpapi.Server{
		Issuer:     cfg.Issuer,
		Service:    svc,
		Clients:    tracedClients{auth},
		Refresher:  up.refresher,
		Tokens:     up.tokens,
		Forwarder:  up.forwarder,
		RelayPings: up.relay != nil,
		Limits:     limits,
		ClientCert: auth.CertThumbprint,
		Discovery:  up.discovery,
		Observer:   m,
		JWKS:       func() any { return signer.PublicJWKS() },
		Ready: func(ctx context.Context) error {
			if _, err := st.GetRecord(ctx, "server", "callback-key"); err != nil {
				return fmt.Errorf("store: %w", err)
			}
			if shared != nil {
				// Redis answers; can it take the writes to acknowledge?
				if err := shared.Ready(ctx); err != nil {
					return fmt.Errorf("store: %w", err)
				}
			}
			if up.ready != nil {
				if err := up.ready(ctx); err != nil {
					return fmt.Errorf("upstream: %w", err)
				}
			}
			return nil
		},
		Logger: log,
	}
	if up.refresher != nil {
		// DPoP (RFC 9449): the local issuer binds its tokens to the
		// proof's key; a proof's jti is recorded in the store, so it is
		// accepted once across every instance that shares it.
		dcfg := dpop.Config{Replay: clientauth.NewProofReplay(st, "dpop", nil), Algs: cfg.Tokens.DPoPAlgs, Window: cfg.Tokens.DPoPWindow}
		if cfg.Tokens.DPoPNonce {
			// Shared through the store, so that every instance accepts
			// the nonces of the others.
			if dcfg.NonceKey, _, err = serverSecret(ctx, st, "dpop-nonce-key", 32); err != nil {
				return nil, err
			}
		}
		if srv.DPoP, err = dpop.NewVerifier(dcfg); err != nil {
			return nil, fmt.Errorf("dpop: %w", err)
		}
	}
	if up.relay == nil { // a relayed request is approved at the upstream
		srv.Approval = &httpapi.Approval{
			Service: svc, Passwords: up.passwords, Federation: up.federation, Logins: st, Key: csrfKey,
			Secure: strings.HasPrefix(cfg.Issuer, "https://"), Push: chans.webPush,
			Pages: httpapi.Pages{
				ServiceName: cfg.Pages.ServiceName, LogoURL: cfg.Pages.LogoURL,
				AccentColor: cfg.Pages.AccentColor, ScopeDescriptions: cfg.Pages.ScopeDescriptions,
			},
			DetailTemplates: cfg.AuthorizationDetails.Templates,
		}
	}
	// The device grant: verified on cibaproxy's page (local, oidc), or
	// relayed to the IdP's own device endpoint (ciba), with no page here.
	if cfg.DeviceEnabled() && (srv.Approval != nil || up.relay != nil) {
		grant, err := ciba.NewDevice(svc, ciba.DeviceConfig{
			Expiry: cfg.Device.Expiry, Interval: cfg.Device.Interval,
			UserCodeCharset: cfg.Device.UserCodeCharset, UserCodeLength: cfg.Device.UserCodeLength,
			VerificationURI: cfg.Issuer + httpapi.PathDevice, Enabled: devices.Enabled,
		})
		if err != nil {
			return nil, fmt.Errorf("device grant: %w", err)
		}
		srv.Device = &httpapi.Device{
			Grant: grant, Approval: srv.Approval, Public: devices.Public,
			PerIP: cfg.Device.AttemptsPerIP, Global: cfg.Device.Attempts,
			NewLimiter: newLimit,
		}
		if lim := srv.Limits; lim != nil {
			// Behind a trusted proxy, count the user's address, not the proxy's.
			srv.Device.ClientIP = func(r *http.Request) string { return lim.ClientIP(r).String() }
		}
		srv.Discovery = withDevice(srv.Discovery, cfg, devices)
	}
	a = &App{Config: cfg, Service: svc, Store: st, Keys: signer, Tracing: tr, log: log, clients: registry, replay: replay}
	switch cfg.Metrics.Listen {
	case config.MetricsOnMain:
		srv.Metrics = m.Handler()
	case "":
		// Not served: see config.Metrics.
	default:
		a.Telemetry = srv.TelemetryHandler(m.Handler())
	}
	a.Handler = tr.Handler(srv.Handler(), tracing.Routes(routes...))
	return a, nil
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
