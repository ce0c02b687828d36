package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// Observer is told about every answered request (package metrics).
type Observer interface {
	// ObserveRequest counts one request: endpoint is the route ("/token",
	// "/approve/{id}", "other"), client a registered client_id or "-",
	// result "ok" or the OAuth error code (or the HTTP status for answers
	// that have none).
	ObserveRequest(endpoint, client, result string, d time.Duration)
}

// HeaderRequestID carries the request id: taken from the request when a
// proxy in front set a sane one, generated otherwise, and always answered.
const HeaderRequestID = "X-Request-Id"

// exchange is what the handlers learn about a request that the access log
// and the metrics need: it is the ResponseWriter they write to.
type exchange struct {
	http.ResponseWriter
	// status is the status answered; statusHijacked when the handler took
	// the connection to answer later (Parking), which reports it then.
	status int
	client string
	result ciba.ErrorCode
	start  time.Time
}

// statusHijacked is exchange.status for a request answered later, on a
// connection taken from net/http.
const statusHijacked = -1

// observed is what the access log and the metrics need of a request
// besides its answer.
type observed struct {
	start                    time.Time
	client, method, endpoint string
}

// observed returns what x and r tell of the request, for an answer
// reported later (report).
func (x *exchange) observed(r *http.Request) observed {
	endpoint := "other"
	if _, path, ok := strings.Cut(r.Pattern, " "); ok && path != "/" {
		endpoint = path
	}
	return observed{start: x.start, client: x.client, method: r.Method, endpoint: endpoint}
}

func (x *exchange) WriteHeader(code int) {
	if x.status == 0 {
		x.status = code
	}
	x.ResponseWriter.WriteHeader(code)
}

func (x *exchange) Write(b []byte) (int, error) {
	if x.status == 0 {
		x.status = http.StatusOK
	}
	return x.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (x *exchange) Unwrap() http.ResponseWriter { return x.ResponseWriter }

type requestIDKey struct{}

// RequestID returns the id of the HTTP request ctx belongs to, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// noteClient records the authenticated client of the request behind w.
func noteClient(w http.ResponseWriter, clientID string) {
	if x, ok := w.(*exchange); ok {
		x.client = clientID
	}
}

// noteResult records the OAuth error code answered on w.
func noteResult(w http.ResponseWriter, code ciba.ErrorCode) {
	if x, ok := w.(*exchange); ok {
		x.result = code
	}
}

// quiet results are the answers to polls that change nothing: logged at
// debug, not info, since absorbing them is what cibaproxy is for and a log
// line each would cost more than the answer.
func quiet(endpoint string, result ciba.ErrorCode) bool {
	return endpoint == PathToken && (result == ciba.CodeAuthorizationPending || result == ciba.CodeSlowDown)
}

// observe gives every request an id, and after it is answered logs one line
// and tells the Observer.
func (s *Server) observe(next http.Handler) http.Handler {
	ids := newRequestIDs()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get(HeaderRequestID)
		if !validRequestID(id) {
			id = ids.next()
		}
		w.Header()[HeaderRequestID] = []string{id}
		x := &exchange{ResponseWriter: w, start: start}
		r = r.WithContext(context.WithValue(r.Context(), requestIDKey{}, id))
		next.ServeHTTP(x, r)
		if x.status == statusHijacked {
			return
		}
		s.report(r.Context(), x.observed(r), x)
	})
}

// report logs one line for the answered request o and tells the Observer;
// x holds its answer.
func (s *Server) report(ctx context.Context, o observed, x *exchange) {
	d := time.Since(o.start)
	client := x.client
	if client == "" {
		client = "-"
	}
	status := x.status
	if status == 0 {
		status = http.StatusOK
	}
	result := string(x.result)
	if result == "" {
		result = "ok"
		if status >= 400 {
			result = strconv.Itoa(status)
		}
	}
	if s.Observer != nil {
		s.Observer.ObserveRequest(o.endpoint, client, result, d)
	}
	level := slog.LevelInfo
	if quiet(o.endpoint, x.result) {
		level = slog.LevelDebug
	}
	if s.Logger.Enabled(ctx, level) {
		s.Logger.LogAttrs(ctx, level, "request",
			slog.String("method", o.method), slog.String("endpoint", o.endpoint),
			slog.Int("status", status), slog.String("result", result),
			slog.String("client_id", client), slog.Duration("duration", d))
	}
}

// requestIDs generates request ids: a random prefix drawn once per handler
// (so that the ids of instances behind one load balancer do not collide)
// and a counter. Request ids name log lines; they are not secrets and need
// not be unpredictable, so no randomness is read per request.
type requestIDs struct {
	prefix string
	n      atomic.Uint64
}

func newRequestIDs() *requestIDs {
	var b [9]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return &requestIDs{prefix: base64.RawURLEncoding.EncodeToString(b[:]) + "-"}
}

// next returns a new id: the prefix and the counter in base 36.
func (g *requestIDs) next() string {
	var buf [32]byte
	b := append(buf[:0], g.prefix...)
	return string(strconv.AppendUint(b, g.n.Add(1), 36))
}

// validRequestID accepts ids a proxy may set: 1 to 64 characters of
// letters, digits, '-', '_' and '.', so a log line cannot be forged
// through it.
func validRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// LogHandler returns h with the request id added to every record logged
// with the context of an HTTP request, so all the lines of one request can
// be found together.
func LogHandler(h slog.Handler) slog.Handler { return requestIDHandler{h} }

type requestIDHandler struct{ slog.Handler }

func (h requestIDHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := RequestID(ctx); id != "" {
		r.AddAttrs(slog.String("request_id", id))
	}
	return h.Handler.Handle(ctx, r)
}

func (h requestIDHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return requestIDHandler{h.Handler.WithAttrs(as)}
}

func (h requestIDHandler) WithGroup(name string) slog.Handler {
	return requestIDHandler{h.Handler.WithGroup(name)}
}
