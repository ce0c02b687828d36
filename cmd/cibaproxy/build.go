package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/mail"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/channel/email"
	"github.com/cibaproxy/cibaproxy/internal/channel/webhook"
	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/clientauth"
	"github.com/cibaproxy/cibaproxy/internal/config"
	"github.com/cibaproxy/cibaproxy/internal/httpapi"
	"github.com/cibaproxy/cibaproxy/internal/jose"
	"github.com/cibaproxy/cibaproxy/internal/keys"
	"github.com/cibaproxy/cibaproxy/internal/metrics"
	"github.com/cibaproxy/cibaproxy/internal/notify"
	"github.com/cibaproxy/cibaproxy/internal/outbound"
	"github.com/cibaproxy/cibaproxy/internal/seal"
	"github.com/cibaproxy/cibaproxy/internal/store/embedded"
	"github.com/cibaproxy/cibaproxy/internal/store/memory"
	redisstore "github.com/cibaproxy/cibaproxy/internal/store/redis"
	"github.com/cibaproxy/cibaproxy/internal/tracing"
)

// app is the wired server.
type app struct {
	service *ciba.Service
	handler http.Handler
	// telemetry serves /metrics, /healthz and /readyz on
	// cfg.Metrics.Listen, when that is an address.
	telemetry http.Handler
	store     ciba.Store
	// clients, replay and cfg are what reloading the clients needs (reload.go).
	clients registry
	replay  jose.Replay
	cfg     *config.Config
	// keys are the issuer's signing keys, reloaded from the store.
	keys *keys.Live
	// tracing exports spans; Shutdown flushes them.
	tracing *tracing.Tracing
	// serverCert is the TLS server certificate in force, reloaded on
	// SIGHUP (tlsreload.go); nil without tls.cert_file. Set by serve
	// before the reloads start.
	serverCert *serverCert
}

func (a *app) close() { _ = a.store.Close() }

// build wires the parts the configuration names. cmd/ only wires: every
// decision lives in the packages.
func build(ctx context.Context, cfg *config.Config, log *slog.Logger) (a *app, err error) {
	m := metrics.New()
	st, err := openStore(ctx, cfg)
	if err != nil {
		return nil, err
	}
	// With Redis the abuse limits are shared by all instances.
	shared, _ := st.(*redisstore.Store)
	newLimit := limitMaker(cfg, shared, m, log)
	st = m.Store(st)
	m.WatchRequests(st, time.Now, 15*time.Second)
	defer func() {
		if err != nil {
			_ = st.Close()
		}
	}()
	tr, err := tracing.New(ctx, tracing.Config{
		Endpoint: cfg.Tracing.OTLPEndpoint, Insecure: cfg.Tracing.Insecure, SampleRatio: cfg.Tracing.SampleRatio,
		ServiceVersion: buildVersion(), Logger: log,
	})
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = tr.Shutdown(context.WithoutCancel(ctx))
		}
	}()

	signer, err := keys.Open(ctx, st, cfg.Tokens.SigningKeyFile, nil, signingAlgs(cfg))
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
	// One guard for every registry the clients are reloaded into (reload.go).
	registry.Current().Guard = clientGuard(cfg, limits, newLimit)

	channel, err := buildChannel(cfg, tr, log)
	if err != nil {
		return nil, err
	}
	if channel == nil && cfg.Upstream.Type != config.UpstreamCIBA && hasCIBAClients(cfg) {
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
	}, ciba.Deps{
		Store:       st,
		Upstream:    up.Upstream,
		Relay:       up.relay,
		Minter:      up.minter,
		Sealer:      ring,
		Channel:     channel,
		Notifier:    notify.HTTP{Client: out},
		Clients:     devices.lookup(registry.Client),
		CallbackKey: callbackKey,
		Logger:      log,
		Observer:    m,
		UserLimit:   userLimit(cfg, newLimit),
		HintSubject: jose.UnverifiedHintName,
		Validator:   validator,
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
	if up.relay == nil { // a relayed request is approved at the upstream
		srv.Approval = &httpapi.Approval{
			Service: svc, Passwords: up.passwords, Federation: up.federation, Logins: st, Key: csrfKey,
			Secure: strings.HasPrefix(cfg.Issuer, "https://"),
			Pages: httpapi.Pages{
				ServiceName: cfg.Pages.ServiceName, LogoURL: cfg.Pages.LogoURL,
				AccentColor: cfg.Pages.AccentColor, ScopeDescriptions: cfg.Pages.ScopeDescriptions,
			},
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
	a = &app{service: svc, store: st, clients: registry, replay: replay, cfg: cfg, keys: signer, tracing: tr}
	switch cfg.Metrics.Listen {
	case config.MetricsOnMain:
		srv.Metrics = m.Handler()
	case "":
		// Not served: see config.Metrics.
	default:
		a.telemetry = srv.TelemetryHandler(m.Handler())
	}
	a.handler = tr.Handler(srv.Handler(), tracing.Routes(routes...))
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
	"POST " + httpapi.PathDevice,
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

func openStore(ctx context.Context, cfg *config.Config) (ciba.Store, error) {
	switch cfg.Store.Type {
	case config.StoreMemory:
		return memory.New(), nil
	case config.StoreEmbedded:
		st, err := embedded.Open(ctx, cfg.Store.Path)
		if err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
		return st, nil
	case config.StoreRedis:
		r := cfg.Store.Redis
		rc := redisstore.Config{
			Addrs: r.Addrs, MasterName: r.MasterName, Cluster: r.Cluster,
			Username: r.Username, Password: r.Password,
			SentinelUsername: r.SentinelUsername, SentinelPassword: r.SentinelPassword,
			DB: r.DB, Timeout: r.Timeout, KeyPrefix: r.KeyPrefix, Retention: cfg.CIBA.ExpiredGrace,
			PollCacheSize: r.PollCacheSize,
			WaitReplicas:  r.WaitReplicas, WaitTimeout: r.WaitTimeout,
		}
		if r.PollCacheSize == 0 {
			rc.PollCacheSize = -1 // off; the store's 0 is its default
		}
		if r.TLS.Enabled {
			t, err := redisstore.LoadTLS(r.TLS.CAFile, r.TLS.CertFile, r.TLS.KeyFile, r.TLS.ServerName)
			if err != nil {
				return nil, fmt.Errorf("store.redis.tls: %w", err)
			}
			rc.TLS = t
		}
		st, err := redisstore.Open(ctx, rc)
		if err != nil {
			return nil, fmt.Errorf("open redis store: %w", err)
		}
		return st, nil
	}
	return nil, fmt.Errorf("store type %q is not supported", cfg.Store.Type)
}

// sealRing returns the token-encryption keys: the configured ones (then a
// key generated earlier, if any, only opens), or one generated on first
// start and kept in the store.
func sealRing(ctx context.Context, cfg *config.Config, st ciba.Store, log *slog.Logger) (*seal.Ring, error) {
	var ks []seal.Key
	for _, k := range cfg.Tokens.EncryptionKeys {
		ks = append(ks, seal.Key{ID: k.ID, Secret: k.Secret})
	}
	if len(ks) > 0 {
		// A key generated before keys were configured still opens what it
		// sealed: that is how the generated key is rotated.
		if secret, err := st.GetRecord(ctx, "server", "encryption-key"); err == nil && len(secret) == seal.KeySize &&
			!slices.ContainsFunc(ks, func(k seal.Key) bool { return k.ID == "store" }) {
			ks = append(ks, seal.Key{ID: "store", Secret: secret})
		} else if err != nil && !errors.Is(err, ciba.ErrNotFound) {
			return nil, fmt.Errorf("read the generated encryption key: %w", err)
		}
	}
	if len(ks) == 0 {
		secret, created, err := serverSecret(ctx, st, "encryption-key", seal.KeySize)
		if err != nil {
			return nil, err
		}
		if created {
			log.Warn("no tokens.encryption_keys configured: generated one and kept it in the store; configure keys to keep them apart from the data they protect")
		}
		ks = []seal.Key{{ID: "store", Secret: secret}}
	}
	return seal.NewRing(ks...)
}

// hasCIBAClients reports whether a client of cfg uses CIBA (not only the
// device grant, whose user comes to the verification page by themselves).
func hasCIBAClients(cfg *config.Config) bool {
	for _, c := range cfg.Clients {
		if c.DeliveryMode != "" {
			return true
		}
	}
	return false
}

// notifyTimeout bounds one ping or push to a client.
const notifyTimeout = 10 * time.Second

// deliveryTimeout bounds one delivery attempt: the longest of the
// notifier's and the channel's own timeouts, so the dispatcher's lease on
// an attempt outlasts whichever send it makes.
func deliveryTimeout(cfg *config.Config) time.Duration {
	d := notifyTimeout
	switch {
	case cfg.Channels.Webhook.URL != "":
		d = max(d, cfg.Channels.Webhook.Timeout)
	case cfg.Channels.Email.Host != "":
		d = max(d, cfg.Channels.Email.Timeout)
	}
	return d
}

// buildChannel returns the configured authentication channel, or nil.
func buildChannel(cfg *config.Config, tr *tracing.Tracing, log *slog.Logger) (ciba.Channel, error) {
	if cfg.Channels.Webhook.URL != "" {
		out := outbound.New(cfg.Channels.Webhook.Timeout)
		out.HTTPClient().Transport = tr.Transport("webhook", out.HTTPClient().Transport)
		return webhook.New(cfg.Channels.Webhook.URL, out), nil
	}
	e := cfg.Channels.Email
	if e.Host == "" {
		return nil, nil
	}
	ec := email.Config{
		Host: e.Host, Port: e.Port, TLS: e.TLS, Username: e.Username, Password: e.Password,
		From: e.From, Subject: e.Subject, TemplateFile: e.TemplateFile, Timeout: e.Timeout,
	}
	if e.CAFile != "" {
		pem, err := os.ReadFile(e.CAFile)
		if err != nil {
			return nil, fmt.Errorf("channels.email.ca_file: %w", err)
		}
		ec.RootCAs = x509.NewCertPool()
		if !ec.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("channels.email.ca_file %s: no PEM certificate in it", e.CAFile)
		}
	}
	if cfg.Upstream.Type == config.UpstreamLocal {
		// Local users may have an email claim; otherwise the login_hint
		// must be an address.
		addrs := make(map[string]string)
		for _, u := range cfg.Upstream.Local.Users {
			if a, ok := u.Claims["email"].(string); ok && a != "" {
				addrs[u.Username] = a
			}
		}
		ec.Recipient = func(r *ciba.AuthRequest) (string, error) {
			if a, ok := addrs[r.LoginHint]; ok {
				return a, nil
			}
			if a, err := mail.ParseAddress(r.LoginHint); err == nil && a.Name == "" {
				return a.Address, nil
			}
			return "", errors.New("the user has no email claim and the login_hint is not an e-mail address")
		}
	}
	ch, err := email.New(ec, log)
	if err != nil {
		return nil, fmt.Errorf("e-mail channel: %w", err)
	}
	return ch, nil
}
