// Package idp is what the upstreams that call an identity provider (the
// IdP) share: the IdP's discovery document, loaded lazily with a retry
// backoff while the IdP cannot be reached, and a readiness probe spaced out
// in time once it has been loaded (Loader). It also fetches and decodes
// the document with go-oidc's issuer check (Fetch, IssuerMismatch,
// Document, Loader.Metadata), and holds the URL check of the upstreams'
// configurations, the error mark of an unreachable IdP (Unavailable), their
// default HTTP client, and the clients' credentials at the IdP with their
// check (Credentials, CheckClients).
//
// What the discovery document must hold, and what the readiness probe
// fetches, differ between upstreams: the caller supplies both as functions.
package idp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"

	"github.com/cibaproxy/cibaproxy/internal/fault"
)

// Discovery retry backoff: the first retry may happen after RetryMin after a
// failed attempt, each further failure doubles the wait up to RetryMax.
const (
	// RetryMin is the wait after the first failed discovery attempt.
	RetryMin = time.Second
	// RetryMax bounds the wait between discovery attempts.
	RetryMax = 30 * time.Second
)

// ReadyProbeEvery bounds how often Ready calls the IdP once discovery has
// succeeded (readiness probes come often, from every instance).
const ReadyProbeEvery = 10 * time.Second

// Config configures a Loader. P is what the caller's discovery yields.
type Config[P any] struct {
	// Prefix starts every log message and every error of the Loader
	// (the upstream's package name, e.g. "oidc"), without the colon.
	Prefix string
	// Issuer is the IdP's issuer URL; it is named in logs and errors.
	Issuer string
	// Discover loads the IdP's discovery document. Every error it returns
	// should wrap fault.ErrUnavailable (see Unavailable): the Loader returns
	// it unchanged, and again to every caller until the backoff allows the
	// next attempt.
	Discover func(ctx context.Context) (*P, error)
	// Probe checks that a loaded IdP still answers; Ready calls it at most
	// once per ReadyProbeEvery. Its errors should wrap fault.ErrUnavailable.
	Probe func(ctx context.Context, p *P) error
	// Loaded, when set, is called once with the IdP when discovery
	// succeeds, after the success is logged and before the IdP is
	// published to other callers (e.g. to log warnings about it).
	Loaded func(p *P)
	// Document returns the discovery document as the IdP served it; it is
	// required by Metadata.
	Document func(p *P) []byte
	// DiscoveryProbes says a successful discovery counts as a readiness
	// probe: the next probe waits ReadyProbeEvery from it. Otherwise the
	// first Ready after discovery probes at once.
	DiscoveryProbes bool
	// Logger receives discovery failures and recoveries; nil discards.
	Logger *slog.Logger
	// Now is the clock of the backoff and of the probe period; nil is
	// time.Now.
	Now func() time.Time
}

// Loader holds the IdP's discovery result, loading it on first use and
// retrying with a backoff while the IdP cannot be reached. It is safe for
// concurrent use; concurrent callers share one discovery attempt.
type Loader[P any] struct {
	cfg Config[P]
	log *slog.Logger
	now func() time.Time

	// p is the loaded discovery result; nil until discovery has succeeded
	// once.
	p atomic.Pointer[P]
	// sem serialises discovery attempts (a mutex that honours contexts);
	// it guards failures, nextTry and lastErr.
	sem      chan struct{}
	failures int
	nextTry  time.Time
	lastErr  error

	// probeMu guards the last readiness probe of a loaded IdP.
	probeMu  sync.Mutex
	probedAt time.Time
	probeErr error
}

// New returns a Loader for cfg. It does not call the IdP: the first Get or
// Ready does.
func New[P any](cfg Config[P]) *Loader[P] {
	l := &Loader[P]{cfg: cfg, log: cfg.Logger, now: cfg.Now, sem: make(chan struct{}, 1)}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if l.now == nil {
		l.now = time.Now
	}
	return l
}

// Loaded returns the IdP once discovery has succeeded, nil before. It never
// calls the IdP.
func (l *Loader[P]) Loaded() *P { return l.p.Load() }

// Get returns the discovered IdP, running discovery when it has not
// succeeded yet and the backoff allows. Within the backoff it returns the
// last attempt's error; while ctx ends before another caller's attempt has
// finished, an error wrapping fault.ErrUnavailable and ctx's error.
func (l *Loader[P]) Get(ctx context.Context) (*P, error) {
	if p := l.p.Load(); p != nil {
		return p, nil
	}
	select {
	case l.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, Unavailable(fmt.Errorf("%s: waiting for discovery of %s: %w", l.cfg.Prefix, l.cfg.Issuer, ctx.Err()))
	}
	defer func() { <-l.sem }()
	if p := l.p.Load(); p != nil {
		return p, nil
	}
	now := l.now()
	if now.Before(l.nextTry) {
		return nil, l.lastErr
	}
	p, err := l.cfg.Discover(ctx)
	if err != nil {
		l.failures++
		wait := RetryMax
		if l.failures <= 5 {
			wait = min(RetryMin<<(l.failures-1), RetryMax)
		}
		l.nextTry = now.Add(wait)
		l.lastErr = err
		l.log.Warn(l.cfg.Prefix+": identity provider not available; retrying on use",
			slog.String("issuer", l.cfg.Issuer), slog.Int("failures", l.failures),
			slog.Duration("retry_after", wait), slog.Any("error", err))
		return nil, err
	}
	if l.failures > 0 {
		l.log.Info(l.cfg.Prefix+": identity provider available again", slog.String("issuer", l.cfg.Issuer), slog.Int("failures", l.failures))
	} else {
		l.log.Info(l.cfg.Prefix+": identity provider discovered", slog.String("issuer", l.cfg.Issuer))
	}
	if l.cfg.Loaded != nil {
		l.cfg.Loaded(p)
	}
	l.failures, l.lastErr, l.nextTry = 0, nil, time.Time{}
	if l.cfg.DiscoveryProbes {
		l.probeMu.Lock()
		l.probedAt, l.probeErr = now, nil
		l.probeMu.Unlock()
	}
	l.p.Store(p)
	return p, nil
}

// Ready reports whether the IdP has been discovered; if not, it tries (as
// Get) and returns the error. Once discovered, it returns the result of the
// last Probe, probing again when the last probe is ReadyProbeEvery old, so
// an IdP that went away turns readiness red.
func (l *Loader[P]) Ready(ctx context.Context) error {
	p, err := l.Get(ctx)
	if err != nil {
		return err
	}
	l.probeMu.Lock()
	defer l.probeMu.Unlock()
	if now := l.now(); now.Sub(l.probedAt) >= ReadyProbeEvery {
		l.probeErr = l.cfg.Probe(ctx, p)
		l.probedAt = now
	}
	return l.probeErr
}

// Metadata returns the IdP's discovery document (Config.Document) as a
// JSON object, a fresh copy on every call, loading the IdP first as Get
// does; its errors are Get's.
func (l *Loader[P]) Metadata(ctx context.Context) (map[string]any, error) {
	p, err := l.Get(ctx)
	if err != nil {
		return nil, err
	}
	return Document(l.cfg.Prefix, l.cfg.Issuer, l.cfg.Document(p))
}

// Fetch loads issuer's discovery document (OIDC Discovery §4) with
// go-oidc, calling it with client; go-oidc checks that the document names
// issuer exactly. Every error wraps fault.ErrUnavailable and starts with
// prefix; an issuer mismatch also wraps *gooidc.IssuerMismatchError (see
// IssuerMismatch), other causes are quoted shortened (they may quote the
// answer's body).
func Fetch(ctx context.Context, prefix string, client *http.Client, issuer string) (*gooidc.Provider, error) {
	gp, err := gooidc.NewProvider(gooidc.ClientContext(ctx, client), issuer)
	if err != nil {
		if mm := (*gooidc.IssuerMismatchError)(nil); errors.As(err, &mm) {
			return nil, Unavailable(fmt.Errorf("%s: discovery of %s: %w", prefix, issuer, err))
		}
		return nil, Unavailable(fmt.Errorf("%s: discovery of %s: %s", prefix, issuer, Shorten(err.Error())))
	}
	return gp, nil
}

// IssuerMismatch returns the configuration error for err when err says the
// IdP calls itself by another issuer than the configured one (a mistake
// retrying cannot fix), and nil for any other err. The error starts with
// prefix.
func IssuerMismatch(prefix string, err error) error {
	if mm := (*gooidc.IssuerMismatchError)(nil); errors.As(err, &mm) {
		return fmt.Errorf("%s: issuer %q: the identity provider calls itself %q; set issuer to exactly that", prefix, mm.Provided, mm.Discovered)
	}
	return nil
}

// Document decodes raw, issuer's discovery document as the IdP served it,
// into a fresh JSON object. The error starts with prefix.
func Document(prefix, issuer string, raw []byte) (map[string]any, error) {
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("%s: decode the discovery document of %s: %w", prefix, issuer, err)
	}
	return m, nil
}

// AbsURL checks that s, the configuration value or endpoint named what, is
// an absolute http(s) URL without query or fragment. The error starts with
// prefix (the caller's package name).
func AbsURL(prefix, what, s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%s: the %s %q is not an absolute http(s) URL without query or fragment", prefix, what, s)
	}
	return nil
}

// DefaultHTTPClient returns the client an upstream calls the IdP with when
// its configuration names none: a 10 s timeout, and no redirects (a
// redirect could take credentials or codes to another host).
func DefaultHTTPClient() *http.Client {
	return &http.Client{
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			MaxIdleConnsPerHost: 16,
			IdleConnTimeout:     90 * time.Second,
			TLSHandshakeTimeout: 10 * time.Second,
		},
	}
}

// Unavailable marks err as the IdP being unreachable: errors.Is matches the
// result with fault.ErrUnavailable (which is ciba.ErrUnavailable), so the
// caller retries or answers temporarily_unavailable, while its message
// stays err's.
func Unavailable(err error) error { return &unavailableError{err: err} }

// unavailableError is what Unavailable returns.
type unavailableError struct{ err error }

func (e *unavailableError) Error() string   { return e.err.Error() }
func (e *unavailableError) Unwrap() []error { return []error{e.err, fault.ErrUnavailable} }

// Shorten bounds a message that may quote an answer's body to 300 bytes.
func Shorten(s string) string {
	const n = 300
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
