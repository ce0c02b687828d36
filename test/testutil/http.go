package testutil

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// HTTP is the client the tests call cibaproxy with: no proxy (everything is
// on loopback), no redirects, and an overall bound on each call.
var HTTP = &http.Client{
	Timeout:       90 * time.Second,
	Transport:     &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 16},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// CallTimeout bounds one HTTP call that is not a long poll. It is a bound
// on a hang, not a speed check: a call that checks a bcrypt password in a
// race-enabled server, while the package's other tests run in parallel on
// a busy machine, can take several seconds.
const CallTimeout = 30 * time.Second

// Client is a registered client and how it authenticates.
type Client struct {
	ID, Secret string
	// Post sends the credentials in the body (client_secret_post) instead
	// of HTTP Basic (client_secret_basic).
	Post bool
}

// The clients of examples/quickstart.yaml.
var (
	DemoPoll = Client{ID: "demo-poll", Secret: "demo-poll-secret"}
	DemoPing = Client{ID: "demo-ping", Secret: "demo-ping-secret"}
	DemoPush = Client{ID: "demo-push", Secret: "demo-push-secret"}
)

// GrantCIBA is the CIBA grant type.
const GrantCIBA = "urn:openid:params:grant-type:ciba"

// Response is an HTTP answer with its body read and, when it is JSON, decoded.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
	// JSON is the body decoded as an object, nil when it is not one.
	JSON map[string]any
}

// Str returns the string member k of the JSON body, or "".
func (r *Response) Str(k string) string {
	s, _ := r.JSON[k].(string)
	return s
}

// String describes the answer for failure messages.
func (r *Response) String() string {
	return fmt.Sprintf("HTTP %d %s", r.Status, r.Body)
}

// Do sends req and reads the answer.
func Do(req *http.Request) (*Response, error) {
	resp, err := HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read %s %s answer: %w", req.Method, req.URL, err)
	}
	r := &Response{Status: resp.StatusCode, Header: resp.Header, Body: body}
	var m map[string]any
	if json.Unmarshal(body, &m) == nil {
		r.JSON = m
	}
	return r, nil
}

// PostForm POSTs form to endpoint as application/x-www-form-urlencoded,
// authenticated as c (unless c.ID is empty).
func PostForm(ctx context.Context, endpoint string, c Client, form url.Values) (*Response, error) {
	f := url.Values{}
	for k, v := range form {
		f[k] = append([]string(nil), v...)
	}
	if c.ID != "" && c.Post {
		f.Set("client_id", c.ID)
		f.Set("client_secret", c.Secret)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(f.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if c.ID != "" && !c.Post {
		// RFC 6749 §2.3.1: both parts are form-urlencoded first.
		req.SetBasicAuth(url.QueryEscape(c.ID), url.QueryEscape(c.Secret))
	}
	return Do(req)
}

// PostRaw POSTs body with the given content type and headers.
func PostRaw(ctx context.Context, endpoint, contentType, body string, header http.Header) (*Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return Do(req)
}

// Get GETs endpoint.
func Get(ctx context.Context, endpoint string) (*Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint, nil)
	if err != nil {
		return nil, err
	}
	return Do(req)
}

// Callback answers a webhook message at its callback_url with the callback
// token as bearer: status is "approved" or "denied".
func Callback(ctx context.Context, m Message, status string) (*Response, error) {
	return CallbackWith(ctx, m.CallbackURL, m.Token, status)
}

// CallbackWith POSTs {"status":status} to callbackURL with bearer token.
func CallbackWith(ctx context.Context, callbackURL, token, status string) (*Response, error) {
	body, err := json.Marshal(map[string]string{"status": status})
	if err != nil {
		return nil, err
	}
	h := http.Header{}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	return PostRaw(ctx, callbackURL, "application/json", string(body), h)
}

// TransportFrom is an HTTP transport whose connections come from the source
// address ip, a loopback address (the whole of 127.0.0.0/8 is local), so a
// test can play several client addresses against limits kept per address.
// It uses no proxy and keeps up to maxIdle idle connections per host.
func TransportFrom(ip string, maxIdle int) *http.Transport {
	d := &net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Transport{Proxy: nil, DialContext: d.DialContext, MaxIdleConnsPerHost: maxIdle}
}
