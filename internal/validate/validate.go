// Package validate is the HTTP consumption-device validation hook (the
// seed's step 3, docs/validation.md): before cibaproxy accepts a
// backchannel authentication request it POSTs what a policy needs to know
// to an operator's service, signed with a shared secret, and that service
// answers {"allow": true} or {"allow": false, "reason": "…"}. It implements
// ciba.Validator; what happens on a refusal or an outage is the ciba
// service's business.
//
// The hook's URL is set by the operator, like the webhook channel's, so it
// is not restricted by address (SECURITY.md): a policy service is usually
// internal. Its calls still follow no redirects and are bounded in time
// and size; the configuration requires https unless validation.allow_http.
package validate

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/outbound"
)

// HeaderSignature carries the signature of each call:
// "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, t + "." + body)>".
const HeaderSignature = "Cibaproxy-Signature"

// MaxAnswer is the largest answer read, in bytes; a longer one is an error.
const MaxAnswer = 4 << 10

// MinSecret is the shortest secret accepted, in bytes.
const MinSecret = 32

// Config configures a Hook.
type Config struct {
	// URL is where each request is POSTed: an absolute http or https URL.
	// The configuration allows http only with validation.allow_http.
	URL string
	// Secret is the HMAC-SHA256 key of HeaderSignature, shared with the
	// hook. At least MinSecret bytes. Never logged.
	Secret []byte
	// Timeout bounds each call, answer included.
	Timeout time.Duration
	// Client makes the calls. Build it with outbound.New and no
	// outbound.Guard: the URL is the operator's, so its address is not
	// restricted, and outbound.New follows no redirects. Its own timeout
	// should be at least Timeout.
	Client *outbound.Client
	// Now is the clock of the signature's timestamp; time.Now when nil.
	Now func() time.Time
}

// Hook calls one validation webhook. It is safe for concurrent use.
type Hook struct {
	cfg   Config
	shown string
}

// New checks cfg and returns a hook.
func New(cfg Config) (*Hook, error) {
	switch {
	case cfg.Client == nil:
		return nil, errors.New("validate: Client is required")
	case len(cfg.Secret) < MinSecret:
		return nil, fmt.Errorf("validate: the secret must be at least %d bytes", MinSecret)
	case cfg.Timeout <= 0:
		return nil, errors.New("validate: Timeout must be positive")
	}
	if u, err := url.Parse(cfg.URL); err != nil || u.Host == "" || u.Scheme != "https" && u.Scheme != "http" {
		return nil, fmt.Errorf("validate: %s is not an absolute http or https URL", outbound.Redact(cfg.URL))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Hook{cfg: cfg, shown: outbound.Redact(cfg.URL)}, nil
}

// Message is the JSON body POSTed for each request (docs/validation.md).
type Message struct {
	// RequestID is the correlation id of the client's HTTP request
	// (cibaproxy's X-Request-Id); also sent as the X-Request-Id header.
	RequestID string `json:"request_id,omitempty"`
	ClientID  string `json:"client_id"`
	// ClientIP is the consumption device's address.
	ClientIP string `json:"client_ip,omitempty"`
	// HintType is login_hint, login_hint_token or id_token_hint; absent
	// for a device authorization request, which names no user.
	HintType string `json:"hint_type,omitempty"`
	// Grant is "device_authorization" for a device authorization request
	// (RFC 8628); absent for a backchannel authentication request.
	Grant string `json:"grant,omitempty"`
	// Subject is the resolved user; absent for a relayed request.
	Subject string `json:"subject,omitempty"`
	// LoginHint is sent only when there is no Subject.
	LoginHint      string `json:"login_hint,omitempty"`
	Scope          string `json:"scope"`
	ACRValues      string `json:"acr_values,omitempty"`
	BindingMessage string `json:"binding_message,omitempty"`
	// RequestedExpiry is the client's requested_expiry in seconds.
	RequestedExpiry int64 `json:"requested_expiry,omitempty"`
	// AuthorizationDetails are the request's authorization_details (RFC
	// 9396), checked against their types' schemas, canonical JSON. A
	// string type (ciba.RawJSON), so that Message stays comparable.
	AuthorizationDetails ciba.RawJSON `json:"authorization_details,omitempty"`
	// ActsForUser is set when the client is a delegate acting for the
	// user (acts_for_user).
	ActsForUser bool `json:"acts_for_user,omitempty"`
}

// NewMessage is the body sent for v.
func NewMessage(v ciba.Validation) Message {
	m := Message{
		RequestID: v.RequestID, ClientID: v.ClientID, HintType: v.HintType, Grant: v.Grant,
		Subject: v.Subject, LoginHint: v.LoginHint, Scope: strings.Join(v.Scopes, " "),
		ACRValues: strings.Join(v.ACRValues, " "), BindingMessage: v.BindingMessage,
		RequestedExpiry: int64(v.RequestedExpiry / time.Second),
	}
	if v.ClientAddr.IsValid() {
		m.ClientIP = v.ClientAddr.String()
	}
	if v.AuthzDetails != "" {
		m.AuthorizationDetails = ciba.RawJSON(v.AuthzDetails)
	}
	m.ActsForUser = v.ActsForUser
	return m
}

// Sign returns the HeaderSignature value for body sent at t.
func Sign(secret, body []byte, t time.Time) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret []byte, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Verify checks a HeaderSignature value for body, as a receiver written in
// Go would: the MAC, in constant time, and that its timestamp is within
// tolerance of now (against replays).
func Verify(secret, body []byte, header string, now time.Time, tolerance time.Duration) error {
	var ts, sig string
	for part := range strings.SplitSeq(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || sig == "" {
		return errors.New("validate: malformed signature header")
	}
	got, err := hex.DecodeString(sig)
	if err != nil || !hmac.Equal(got, mac(secret, ts, body)) {
		return errors.New("validate: the signature does not match")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return errors.New("validate: the signature's timestamp is too old or in the future")
	}
	return nil
}

// Validate implements ciba.Validator: one POST, no retry (the client is
// waiting). Any answer but HTTP 200 with a well-formed JSON verdict is an
// error; errors name the URL without its query and never hold the secret.
func (h *Hook) Validate(ctx context.Context, v ciba.Validation) (ciba.Verdict, error) {
	body, err := json.Marshal(NewMessage(v))
	if err != nil {
		return ciba.Verdict{}, fmt.Errorf("validate: encode: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return ciba.Verdict{}, fmt.Errorf("validate: bad URL %s", h.shown)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "cibaproxy")
	req.Header.Set(HeaderSignature, Sign(h.cfg.Secret, body, h.cfg.Now()))
	if v.RequestID != "" {
		req.Header.Set("X-Request-Id", v.RequestID)
	}
	resp, err := h.cfg.Client.HTTPClient().Do(req)
	if err != nil {
		// *url.Error repeats the whole URL; keep only its cause.
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err
		}
		return ciba.Verdict{}, fmt.Errorf("validate: POST %s: %w", h.shown, err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, MaxAnswer+1))
	if err != nil {
		return ciba.Verdict{}, fmt.Errorf("validate: POST %s: reading the answer: %w", h.shown, err)
	}
	if resp.StatusCode != http.StatusOK {
		return ciba.Verdict{}, &outbound.StatusError{URL: h.shown, Status: resp.StatusCode}
	}
	if len(answer) > MaxAnswer {
		return ciba.Verdict{}, fmt.Errorf("validate: %s answered more than %d bytes", h.shown, MaxAnswer)
	}
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return ciba.Verdict{}, fmt.Errorf("validate: %s answered Content-Type %q, want application/json", h.shown, truncate(resp.Header.Get("Content-Type")))
	}
	verdict, err := ParseAnswer(answer)
	if err != nil {
		return ciba.Verdict{}, fmt.Errorf("validate: %s: %w", h.shown, err)
	}
	return verdict, nil
}

// ParseAnswer parses the hook's answer strictly: exactly one JSON object
// with a boolean "allow" and an optional string "reason", each at most
// once, no other member, nothing after it, valid UTF-8, at most MaxAnswer
// bytes. The reason is returned as sent (the caller sanitises and bounds
// it). Errors quote no value of the answer.
func ParseAnswer(b []byte) (ciba.Verdict, error) {
	if len(b) > MaxAnswer {
		return ciba.Verdict{}, fmt.Errorf("answer longer than %d bytes", MaxAnswer)
	}
	if !utf8.Valid(b) {
		return ciba.Verdict{}, errors.New("the answer is not valid UTF-8")
	}
	if !json.Valid(b) {
		return ciba.Verdict{}, errors.New("the answer is not valid JSON")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return ciba.Verdict{}, errors.New("the answer is not a JSON object")
	}
	var (
		v                  ciba.Verdict
		seenAllow, seenRsn bool
	)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return ciba.Verdict{}, errors.New("the answer is not valid JSON")
		}
		key, _ := tok.(string)
		val, err := dec.Token()
		if err != nil {
			return ciba.Verdict{}, errors.New("the answer is not valid JSON")
		}
		switch key {
		case "allow":
			b, ok := val.(bool)
			switch {
			case seenAllow:
				return ciba.Verdict{}, errors.New(`"allow" appears twice`)
			case !ok:
				return ciba.Verdict{}, errors.New(`"allow" must be true or false`)
			}
			v.Allow, seenAllow = b, true
		case "reason":
			s, ok := val.(string)
			switch {
			case seenRsn:
				return ciba.Verdict{}, errors.New(`"reason" appears twice`)
			case !ok:
				return ciba.Verdict{}, errors.New(`"reason" must be a string`)
			}
			v.Reason, seenRsn = s, true
		default:
			return ciba.Verdict{}, fmt.Errorf("unknown member %q; only allow and reason are defined", truncate(key))
		}
	}
	if !seenAllow {
		return ciba.Verdict{}, errors.New(`"allow" is required`)
	}
	// json.Valid held, so what follows the members is the closing brace
	// and nothing else.
	return v, nil
}

// truncate bounds a value of the answer quoted in an error.
func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
