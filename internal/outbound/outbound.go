// Package outbound is the HTTP client cibaproxy uses to call out: ping and
// push notifications to clients, the webhook authentication channel and the
// fetches of clients' jwks_uri. It never follows redirects, bounds the time
// of each call and how much of an answer it reads, and reports failures
// without echoing bearer tokens or the query of a URL. A client made with
// [Guard] also refuses plain http and connections to special-use addresses
// (loopback, private, link-local …) unless its [Policy] allows them.
package outbound

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// maxAnswer is how much of a response body is read (and discarded) so the
// connection can be reused; the rest is cut off.
const maxAnswer = 64 << 10

// Bounds of each connection.
const (
	dialTimeout         = 10 * time.Second
	dialKeepAlive       = 30 * time.Second
	tlsHandshakeTimeout = 10 * time.Second
	maxHeaderBytes      = 64 << 10
)

// Client posts JSON to receivers that answer 2xx on success.
type Client struct {
	http *http.Client
}

// Option configures New.
type Option func(*options)

type options struct{ policy *Policy }

// Guard restricts the client to what p allows: https only unless
// p.AllowHTTP, and no special-use address unless in p.AllowNetworks,
// checked on the resolved address at connection time. A guarded client does
// not use the HTTP(S)_PROXY environment variables, since through a proxy the
// check would see the proxy's address and not the destination.
func Guard(p Policy) Option {
	return func(o *options) { o.policy = &p }
}

// New returns a client whose calls give up after timeout. Without Guard it
// may call any http or https URL: use it for URLs only the operator sets.
func New(timeout time.Duration, opts ...Option) *Client {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	tr := &http.Transport{
		Proxy:                  http.ProxyFromEnvironment,
		MaxIdleConnsPerHost:    16,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    tlsHandshakeTimeout,
		ResponseHeaderTimeout:  timeout,
		MaxResponseHeaderBytes: maxHeaderBytes,
		ForceAttemptHTTP2:      true,
	}
	var rt http.RoundTripper = tr
	if o.policy != nil {
		tr.Proxy = nil
		tr.DialContext = guardedDialer(o.policy).DialContext
		rt = &guardTransport{policy: o.policy, next: tr}
	}
	return &Client{http: &http.Client{
		Timeout: timeout,
		// A redirect could aim the bearer at another host; treat it as failure.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport:     rt,
	}}
}

// HTTPClient is the underlying client, for libraries that take one (the
// jwks_uri fetcher). It follows no redirects and applies the client's
// policy; the caller bounds what it reads.
func (c *Client) HTTPClient() *http.Client { return c.http }

// StatusError is a receiver's non-2xx answer.
type StatusError struct {
	// URL is the receiver without query or user info.
	URL    string
	Status int
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("outbound: %s answered HTTP %d", e.URL, e.Status)
}

// Redact returns u without user info, query and fragment, which may carry a
// secret of the receiver's, for errors and logs.
func Redact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(an invalid URL)"
	}
	p.User, p.RawQuery, p.ForceQuery, p.Fragment, p.RawFragment = nil, "", false, "", ""
	return p.String()
}

// PostJSON POSTs body as application/json with an optional bearer token and
// returns nil for any 2xx answer. It reads at most 64 KiB of the answer. An
// error never holds the bearer, nor the URL's query; a refused connection
// wraps *RefusedError, plain http without the policy's consent
// ErrPlainHTTP.
func (c *Client) PostJSON(ctx context.Context, rawURL, bearer string, body []byte) error {
	h := http.Header{"Content-Type": {"application/json"}}
	if bearer != "" {
		h.Set("Authorization", "Bearer "+bearer)
	}
	return c.Post(ctx, rawURL, h, body)
}

// Post POSTs body with the given header fields and returns nil for any 2xx
// answer, like PostJSON: it reads at most 64 KiB of the answer, and an
// error never holds the header's values nor the URL's query. A non-2xx
// answer is a *StatusError.
func (c *Client) Post(ctx context.Context, rawURL string, header http.Header, body []byte) error {
	shown := Redact(rawURL)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rawURL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("outbound: bad URL %s", shown)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("User-Agent", "cibaproxy")
	resp, err := c.http.Do(req)
	if err != nil {
		// *url.Error repeats the whole URL; keep only its cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("outbound: POST %s: %w", shown, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswer))
	if resp.StatusCode/100 != 2 {
		return &StatusError{URL: shown, Status: resp.StatusCode}
	}
	return nil
}
