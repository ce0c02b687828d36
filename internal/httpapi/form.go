package httpapi

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// maxForm bounds a request body; a CIBA request with a signed request object
// fits comfortably.
const maxForm = 64 << 10

// parseForm reads an application/x-www-form-urlencoded POST body. A
// parameter given twice is refused (RFC 6749 §3.1, §3.2), as is a body of
// another type or size.
func parseForm(w http.ResponseWriter, r *http.Request) (url.Values, error) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, ciba.Errorf(ciba.CodeInvalidRequest, "the body must be application/x-www-form-urlencoded")
	}
	body, err := readBody(w, r, maxForm)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, ciba.Errorf(ciba.CodeInvalidRequest, "the body is larger than %d bytes", maxForm)
		}
		return nil, ciba.Errorf(ciba.CodeInvalidRequest, "the body could not be read")
	}
	return parseFormBody(string(body))
}

// readBody reads the body, at most limit bytes. With a Content-Length (as
// clients send for small forms) it reads into a buffer of exactly that size
// rather than growing one.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	body := http.MaxBytesReader(w, r.Body, limit)
	if n := r.ContentLength; n > 0 && n <= limit {
		buf := make([]byte, n)
		if _, err := io.ReadFull(body, buf); err != nil {
			return nil, err
		}
		// Anything beyond the announced length is a malformed request;
		// net/http would not pass it on anyway.
		return buf, nil
	}
	return io.ReadAll(body)
}

// parseFormBody parses form data, refusing repeated and malformed parameters.
func parseFormBody(body string) (url.Values, error) {
	form, err := url.ParseQuery(body)
	if err != nil {
		return nil, ciba.Errorf(ciba.CodeInvalidRequest, "the form body is malformed")
	}
	if err := checkParams(form); err != nil {
		return nil, err
	}
	return form, nil
}

// Header values shared by every JSON answer. net/http only reads them, so
// one slice each serves every response (Header.Set would allocate a new one
// per answer on the hot path).
var (
	valueJSON    = []string{"application/json"}
	valueNoStore = []string{"no-store"}
	valueNoCache = []string{"no-cache"}
)

// noStore marks a response as not cacheable (RFC 6749 §5.1).
func noStore(h http.Header) {
	h["Cache-Control"] = valueNoStore
	h["Pragma"] = valueNoCache
}

// challenger is an error that asks for a WWW-Authenticate header (a client
// that tried HTTP Basic and failed, RFC 6749 §5.2).
type challenger interface{ Challenge() string }

// writeError answers err as an RFC 6749 §5.2 JSON error.
func writeError(w http.ResponseWriter, err error) {
	e := ciba.AsError(err)
	noteResult(w, e.Code)
	// A refusal by a limit (clientauth.LimitError, or a protocol error
	// with its RetryAfter set: a user_code check whose bcrypt slots were
	// busy) carries its Retry-After; it is only ever a 429 or a 503, so
	// the poll path's authorization_pending (400) pays no errors.As for it.
	if st := e.HTTPStatus(); st == http.StatusTooManyRequests || st == http.StatusServiceUnavailable {
		var ra interface{ RetryAfter() time.Duration }
		if errors.As(err, &ra) {
			retryAfter(w, ra.RetryAfter())
		} else if v := e.RetryAfterHeader(); v != nil {
			w.Header()["Retry-After"] = v
		}
	}
	if e.Code == ciba.CodeInvalidClient || e.Code == ciba.CodeInvalidToken {
		h := w.Header()
		var c challenger
		if errors.As(err, &c) && c.Challenge() != "" {
			h.Set("WWW-Authenticate", c.Challenge())
		} else if e.Code == ciba.CodeInvalidToken {
			h.Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		}
	}
	writeJSON(w, e.HTTPStatus(), e.JSON())
}

// writeJSON answers v as JSON with no-store caching.
func writeJSON(w http.ResponseWriter, status int, v any) {
	var body []byte
	switch b := v.(type) {
	case []byte:
		body = b
	default:
		var err error
		if body, err = json.Marshal(v); err != nil {
			status, body = http.StatusInternalServerError, []byte(`{"error":"server_error"}`)
		}
	}
	h := w.Header()
	h["Content-Type"] = valueJSON
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	noStore(h)
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
