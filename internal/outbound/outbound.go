// Package outbound is the HTTP client cibaproxy uses to call out: ping and
// push notifications to clients and the webhook authentication channel.
// It never follows redirects, bounds the time of each call and how much of
// an answer it reads, and reports failures without echoing bearer tokens.
package outbound

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// maxAnswer is how much of a response body is read (and discarded) so the
// connection can be reused.
const maxAnswer = 64 << 10

// Client posts JSON to receivers that answer 2xx on success.
type Client struct {
	http *http.Client
}

// New returns a client whose calls give up after timeout.
func New(timeout time.Duration) *Client {
	return &Client{http: &http.Client{
		Timeout: timeout,
		// A redirect could aim the bearer at another host; treat it as failure.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			MaxIdleConnsPerHost: 16,
			IdleConnTimeout:     90 * time.Second,
			TLSHandshakeTimeout: 10 * time.Second,
		},
	}}
}

// StatusError is a receiver's non-2xx answer.
type StatusError struct {
	URL    string
	Status int
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("outbound: %s answered HTTP %d", e.URL, e.Status)
}

// PostJSON POSTs body as application/json with an optional bearer token and
// returns nil for any 2xx answer.
func (c *Client) PostJSON(ctx context.Context, url, bearer string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("outbound: bad URL %q: %w", url, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "cibaproxy")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("outbound: POST %s: %w", url, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswer))
	if resp.StatusCode/100 != 2 {
		return &StatusError{URL: url, Status: resp.StatusCode}
	}
	return nil
}
