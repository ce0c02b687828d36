package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/clientauth"
	"github.com/cibaproxy/cibaproxy/internal/config"
	"github.com/cibaproxy/cibaproxy/internal/dpop"
	"github.com/cibaproxy/cibaproxy/internal/httpapi"
	"github.com/cibaproxy/cibaproxy/internal/jose"
	"github.com/cibaproxy/cibaproxy/internal/keys"
	"github.com/cibaproxy/cibaproxy/internal/limit"
	"github.com/cibaproxy/cibaproxy/internal/metrics"
	"github.com/cibaproxy/cibaproxy/internal/notify"
	"github.com/cibaproxy/cibaproxy/internal/outbound"
	"github.com/cibaproxy/cibaproxy/internal/seal"
	redisstore "github.com/cibaproxy/cibaproxy/internal/store/redis"
	"github.com/cibaproxy/cibaproxy/internal/tracing"
)

// builder holds what New has built so far; each of its steps adds to it,
// in the order New runs them.
type builder struct {
	cfg  *config.Config
	opts Options
	log  *slog.Logger
	now  func() time.Time
	m    *metrics.Metrics

	// openStore
	st       ciba.Store        // wrapped by the metrics
	shared   *redisstore.Store // the store when it is Redis: the limits and readiness use it
	newLimit func(string, limit.Rate) limit.Keyed
	// openTracing
	tr *tracing.Tracing
	// loadSecrets
	signer               *keys.Live
	ring                 *seal.Ring
	callbackKey, csrfKey []byte
	// buildClients
	replay   jose.Replay
	out      *outbound.Client
	registry registry
	auth     *clientauth.Authenticator
	// buildUpstream
	up        *upstream
	limits    *httpapi.Limits
	hashSlots *limit.Slots
	// buildService
	chans   channels
	devices deviceClients
	svc     *ciba.Service
	// buildServer
	srv *httpapi.Server
}

// newBuilder starts the build of cfg's instance with opts' logger and clock
// (discarding and time.Now when unset) and the metrics.
func newBuilder(cfg *config.Config, opts Options) *builder {
	b := &builder{cfg: cfg, opts: opts, log: opts.Logger, now: opts.Now, m: metrics.New()}
	if b.log == nil {
		b.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if b.now == nil {
		b.now = time.Now
	}
	return b
}

// release closes what the steps so far opened: the tracing and the store.
func (b *builder) release(ctx context.Context) {
	if b.tr != nil {
		_ = b.tr.Shutdown(context.WithoutCancel(ctx))
	}
	_ = b.st.Close()
}

// openStore opens the store (or takes Options.Store), makes the abuse
// limits (shared by all instances on Redis) and wraps the store in the
// metrics.
func (b *builder) openStore(ctx context.Context) error {
	st := b.opts.Store
	if st == nil {
		var err error
		if st, err = OpenStore(ctx, b.cfg); err != nil {
			return err
		}
	}
	b.shared, _ = st.(*redisstore.Store)
	b.newLimit = limitMaker(b.cfg, b.shared, b.m, b.log)
	b.st = b.m.Store(st)
	b.m.WatchRequests(b.st, b.now, 15*time.Second)
	return nil
}

// openTracing starts the span exporter.
func (b *builder) openTracing(ctx context.Context) error {
	tr, err := tracing.New(ctx, tracing.Config{
		Endpoint: b.cfg.Tracing.OTLPEndpoint, Insecure: b.cfg.Tracing.Insecure, SampleRatio: b.cfg.Tracing.SampleRatio,
		ServiceVersion: b.opts.Version, Logger: b.log,
	})
	if err != nil {
		return err
	}
	b.tr = tr
	return nil
}

// loadSecrets reads, or creates on first start, the signing keys, the
// sealing ring and the server's secrets (callback and CSRF keys).
func (b *builder) loadSecrets(ctx context.Context) (err error) {
	b.signer, err = keys.Open(ctx, b.st, b.cfg.Tokens.SigningKeyFile, nil, SigningAlgs(b.cfg))
	if err != nil {
		return fmt.Errorf("signing key: %w", err)
	}
	if algs := b.signer.Algs(); b.cfg.FAPI.CIBA && !slices.Contains(keys.FAPIAlgs().Allowed, algs[0]) {
		// Switching to FAPI: the key in force was rotated out, but signs
		// until its successor takes over (keys.Open).
		b.log.Warn("fapi.ciba: tokens are signed with the previous key's algorithm until the key of the last `keys rotate` starts signing",
			slog.String("alg", algs[0]), slog.String("next_alg", algs[len(algs)-1]))
	}
	if b.ring, err = sealRing(ctx, b.cfg, b.st, b.log); err != nil {
		return err
	}
	if b.callbackKey, _, err = serverSecret(ctx, b.st, "callback-key", 32); err != nil {
		return err
	}
	b.csrfKey, _, err = serverSecret(ctx, b.st, "csrf-key", 32)
	return err
}

// buildClients builds the client registry and the authenticator, with the
// replay record of assertions and request objects and the outbound client
// for the URLs clients chose.
func (b *builder) buildClients(ctx context.Context) (err error) {
	b.replay = clientauth.NewStoreReplay(b.st, "jti")
	// Calls to URLs clients chose (notification endpoints, jwks_uri) are
	// held to the outbound policy against server-side request forgery.
	b.out = outbound.New(notifyTimeout, outbound.Guard(b.cfg.Outbound.Policy()))
	b.out.HTTPClient().Transport = b.tr.Transport("notify", b.out.HTTPClient().Transport)
	if b.registry, err = buildClients(ctx, b.cfg, b.replay); err != nil {
		return err
	}
	b.auth = &clientauth.Authenticator{Registry: b.registry.Live, RequestObjects: jose.RequestObjectPolicy{
		Issuer:    b.cfg.Issuer,
		Audiences: []string{b.cfg.Issuer + httpapi.PathBCAuthz},
		Replay:    b.replay,
	}}
	return nil
}

// buildUpstream builds the upstream the configuration names, adds its
// audiences to the assertion checks, and makes the HTTP limits and the
// client guard.
func (b *builder) buildUpstream(ctx context.Context) (err error) {
	cfg := b.cfg
	b.hashSlots = hashSlots()
	switch cfg.Upstream.Type {
	case config.UpstreamOIDC:
		b.up, err = buildOIDC(ctx, cfg, b.registry, b.m, b.tr, b.log)
	case config.UpstreamCIBA:
		b.up, err = buildCIBA(ctx, cfg, b.registry, b.m, b.tr, b.log)
	default:
		b.up, err = buildLocal(cfg, b.st, b.signer, b.registry, b.hashSlots, b.log)
	}
	if err != nil {
		return err
	}
	b.auth.RequestObjects.Audiences = append(b.auth.RequestObjects.Audiences, b.up.audiences...)
	b.registry.Current().AssertionPolicy.Audiences = b.up.audiences
	b.limits = httpLimits(cfg, b.newLimit)
	// One guard for every registry the clients are reloaded into (ReloadClients).
	b.registry.Current().Guard = clientGuard(cfg, b.limits, b.hashSlots, b.newLimit)
	return nil
}

// buildService builds the channels, the validation hook and the ciba
// service.
func (b *builder) buildService(ctx context.Context) (err error) {
	cfg := b.cfg
	if b.chans, err = buildChannels(ctx, cfg, b.st, b.tr, b.log); err != nil {
		return err
	}
	// What check-config prints as warnings (no channel, a switch that
	// does nothing) is logged at start too.
	for _, w := range cfg.Warnings() {
		b.log.Warn(w)
	}
	validator, err := buildValidator(cfg, b.tr)
	if err != nil {
		return fmt.Errorf("validation hook: %w", err)
	}
	b.devices = newDeviceClients(cfg)
	b.svc, err = ciba.NewService(ciba.Config{
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
		AuthzDetails:      b.registry.details,
		Issuer:            cfg.Issuer,
		LoginHintIssuers:  cfg.CIBA.LoginHintIssuers,
	}, ciba.Deps{
		Store:       b.st,
		Upstream:    b.up.Upstream,
		Relay:       b.up.relay,
		Minter:      b.up.minter,
		Sealer:      b.ring,
		Channels:    b.chans.list,
		Notifier:    notify.HTTP{Client: b.out},
		Clients:     b.devices.lookup(b.registry.Client),
		CallbackKey: b.callbackKey,
		Logger:      b.log,
		Observer:    b.m,
		UserLimit:   userLimit(cfg, b.newLimit),
		HintSubject: jose.UnverifiedHintName,
		Validator:   validator,
		Now:         b.opts.Now,
		Trace:       b.tr.TraceParent,
		StartSpan:   b.tr.StartSpan,

		// user_code guessing at bc-authorize (limits.user_code_failures_*).
		UserCodeFailures: userCodeFailures(cfg, b.newLimit),

		// validation.fail: open accepts a request the hook gives no verdict on.
		ValidationFailOpen: cfg.Validation.FailOpen(),
	})
	return err
}

// buildServer builds the HTTP server: the endpoints, readiness, DPoP for
// the local issuer, the approval page and the device grant.
func (b *builder) buildServer(ctx context.Context) error {
	cfg, up := b.cfg, b.up
	b.srv = &httpapi.Server{
		Issuer:     cfg.Issuer,
		Service:    b.svc,
		Clients:    tracedClients{b.auth},
		Refresher:  up.refresher,
		Tokens:     up.tokens,
		Forwarder:  up.forwarder,
		RelayPings: up.relay != nil,
		Limits:     b.limits,
		ClientCert: b.auth.CertThumbprint,
		Discovery:  up.discovery,
		Observer:   b.m,
		JWKS:       func() any { return b.signer.PublicJWKS() },
		// Auth0-style clients post token requests to /oauth/token (and
		// wait what Retry-After says after a slow_down).
		TokenAliases: cfg.HTTP.TokenAliases,
		Ready:        b.ready,
		Logger:       b.log,
		Now:          b.opts.Now,
	}
	if up.refresher != nil {
		if err := b.buildDPoP(ctx); err != nil {
			return err
		}
	}
	if up.relay == nil { // a relayed request is approved at the upstream
		b.srv.Approval = &httpapi.Approval{
			Service: b.svc, Passwords: up.passwords, Federation: up.federation, Logins: b.st, Key: b.csrfKey,
			Secure: strings.HasPrefix(cfg.Issuer, "https://"), Push: b.chans.webPush,
			Pages: httpapi.Pages{
				ServiceName: cfg.Pages.ServiceName, LogoURL: cfg.Pages.LogoURL,
				AccentColor: cfg.Pages.AccentColor, ScopeDescriptions: cfg.Pages.ScopeDescriptions,
			},
			DetailTemplates: b.registry.details,
		}
		if cfg.Upstream.Type == config.UpstreamLocal {
			b.srv.Approval.Passkeys = Passkeys(cfg, b.st, b.signer, b.log)
		}
	}
	// The device grant: verified on cibaproxy's page (local, oidc), or
	// relayed to the IdP's own device endpoint (ciba), with no page here.
	if cfg.DeviceEnabled() && (b.srv.Approval != nil || up.relay != nil) {
		return b.buildDevice()
	}
	return nil
}

// ready is the readiness check: the store answers (and, on Redis, can take
// the writes to acknowledge), and so does the upstream.
func (b *builder) ready(ctx context.Context) error {
	if _, err := b.st.GetRecord(ctx, "server", "callback-key"); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if b.shared != nil {
		// Redis answers; can it take the writes to acknowledge?
		if err := b.shared.Ready(ctx); err != nil {
			return fmt.Errorf("store: %w", err)
		}
	}
	if b.up.ready != nil {
		if err := b.up.ready(ctx); err != nil {
			return fmt.Errorf("upstream: %w", err)
		}
	}
	return nil
}

// buildDPoP sets up DPoP (RFC 9449) for the local issuer, which binds its
// tokens to the proof's key; a proof's jti is recorded in the store, so it
// is accepted once across every instance that shares it.
func (b *builder) buildDPoP(ctx context.Context) (err error) {
	dcfg := dpop.Config{Replay: clientauth.NewProofReplay(b.st, "dpop", nil), Algs: b.cfg.Tokens.DPoPAlgs, Window: b.cfg.Tokens.DPoPWindow}
	if b.cfg.Tokens.DPoPNonce {
		// Shared through the store, so that every instance accepts the
		// nonces of the others.
		if dcfg.NonceKey, _, err = serverSecret(ctx, b.st, "dpop-nonce-key", 32); err != nil {
			return err
		}
	}
	if b.srv.DPoP, err = dpop.NewVerifier(dcfg); err != nil {
		return fmt.Errorf("dpop: %w", err)
	}
	return nil
}

// buildDevice sets up the device grant and its endpoints.
func (b *builder) buildDevice() error {
	cfg := b.cfg
	grant, err := ciba.NewDevice(b.svc, ciba.DeviceConfig{
		Expiry: cfg.Device.Expiry, Interval: cfg.Device.Interval,
		UserCodeCharset: cfg.Device.UserCodeCharset, UserCodeLength: cfg.Device.UserCodeLength,
		VerificationURI: cfg.Issuer + httpapi.PathDevice, Enabled: b.devices.Enabled,
	})
	if err != nil {
		return fmt.Errorf("device grant: %w", err)
	}
	b.srv.Device = &httpapi.Device{
		Grant: grant, Approval: b.srv.Approval, Public: b.devices.Public,
		PerIP: cfg.Device.AttemptsPerIP, Global: cfg.Device.Attempts,
		NewLimiter: b.newLimit,
	}
	if lim := b.srv.Limits; lim != nil {
		// Behind a trusted proxy, count the user's address, not the proxy's.
		b.srv.Device.ClientIP = func(r *http.Request) string { return lim.ClientIP(r).String() }
	}
	b.srv.Discovery = withDevice(b.srv.Discovery, cfg, b.devices)
	return nil
}

// MaxParked bounds the long polls held with their connections parked
// (httpapi.Parking); more are held on net/http's goroutines.
const MaxParked = 200_000

// app is the instance built: its handlers, with /metrics where the
// configuration puts it.
func (b *builder) app() *App {
	a := &App{Config: b.cfg, Service: b.svc, Store: b.st, Keys: b.signer, Tracing: b.tr, HashSlots: b.hashSlots, log: b.log,
		clients: b.registry, replay: b.replay}
	switch b.cfg.Metrics.Listen {
	case config.MetricsOnMain:
		b.srv.Metrics = b.m.Handler()
	case "":
		// Not served: see config.Metrics.
	default:
		a.Telemetry = b.srv.TelemetryHandler(b.m.Handler())
	}
	if b.cfg.CIBA.LongPoll > 0 {
		// The write timeout is the one cmd/cibaproxy gives its server.
		b.srv.Parking = httpapi.NewParking(MaxParked, b.cfg.CIBA.LongPoll+30*time.Second)
		a.Parking = b.srv.Parking
		b.m.ParkedPolls(a.Parking.Len)
	}
	a.Handler = b.tr.Handler(b.srv.Handler(), tracing.Routes(routes...))
	return a
}
