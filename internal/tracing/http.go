package tracing

import (
	"net/http"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Span attributes, after the OpenTelemetry semantic conventions for HTTP
// (https://opentelemetry.io/docs/specs/semconv/http/http-spans/), less the
// ones that could carry a secret or personal data: url.path, url.query,
// url.full, headers, client.address, user_agent.original.
const (
	attrMethod = "http.request.method"
	attrRoute  = "http.route"
	attrStatus = "http.response.status_code"
	attrScheme = "url.scheme"
	attrHost   = "server.address"
	attrPort   = "server.port"
	// attrPeer is the kind of party an outbound call goes to (oidc, ciba,
	// webhook, notify), as given to Transport.
	attrPeer = "cibaproxy.peer"
)

// Handler returns next with a server span around each request, in the
// trace of the request's traceparent header when it has one. spanName
// names the span, "POST /token" say (see Routes): never a raw path, which
// may hold an id. The span records the method, the route (what follows the
// method in the name), the response status and, once the client is
// authenticated, its client_id (SetClient). Off, next is returned as is.
func (t *Tracing) Handler(next http.Handler, spanName func(*http.Request) string) http.Handler {
	if !t.Enabled() {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := t.prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		name := spanName(r)
		attrs := []attribute.KeyValue{attribute.String(attrMethod, method(r.Method))}
		if _, route, ok := strings.Cut(name, " "); ok {
			attrs = append(attrs, attribute.String(attrRoute, route))
		}
		ctx, span := t.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attrs...))
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			status := sw.status
			if status == 0 {
				status = http.StatusOK
			}
			span.SetAttributes(attribute.Int(attrStatus, status))
			if status >= 500 {
				fail(span, strconv.Itoa(status))
			}
			span.End()
		}()
		next.ServeHTTP(sw, r.WithContext(ctx))
	})
}

// Routes returns a spanName for Handler that names a request by the
// pattern it matches among patterns, which are http.ServeMux patterns with
// a method ("POST /token", "GET /approve/{id}"), the same the server
// routes by. A request that matches none is named by its method alone.
func Routes(patterns ...string) func(*http.Request) string {
	mux := http.NewServeMux()
	for _, p := range patterns {
		mux.Handle(p, http.NotFoundHandler())
	}
	return func(r *http.Request) string {
		if _, p := mux.Handler(r); p != "" {
			return p
		}
		return method(r.Method)
	}
}

// method returns m if it is a standard method, "_OTHER" otherwise, so a
// client cannot fill span names with values of its choosing.
func method(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return m
	}
	return "_OTHER"
}

// statusWriter remembers the status answered.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (flushes,
// deadlines of long polls).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Transport returns next with a client span around each call, named by
// the method and kind ("POST webhook"), and the W3C traceparent header
// added so the receiver can join the trace. The span records the method,
// the URL's scheme, host and port only (a path or query may hold a
// secret), the response status and, on failure, the error's type. A nil
// next means http.DefaultTransport; off, next is returned as is.
func (t *Tracing) Transport(kind string, next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	if !t.Enabled() {
		return next
	}
	return &transport{t: t, kind: kind, next: next}
}

type transport struct {
	t    *Tracing
	kind string
	next http.RoundTripper
}

func (tr *transport) RoundTrip(r *http.Request) (*http.Response, error) {
	m := method(r.Method)
	attrs := []attribute.KeyValue{
		attribute.String(attrMethod, m),
		attribute.String(attrScheme, r.URL.Scheme),
		attribute.String(attrHost, r.URL.Hostname()),
		attribute.String(attrPeer, tr.kind),
	}
	if p, err := strconv.Atoi(r.URL.Port()); err == nil {
		attrs = append(attrs, attribute.Int(attrPort, p))
	}
	ctx, span := tr.t.tracer.Start(r.Context(), m+" "+tr.kind, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	defer span.End()
	// A RoundTripper must not change the caller's request: send a copy
	// with the header added.
	r = r.Clone(ctx)
	tr.t.prop.Inject(ctx, propagation.HeaderCarrier(r.Header))
	resp, err := tr.next.RoundTrip(r)
	if err != nil {
		fail(span, errorType(err))
		return nil, err
	}
	span.SetAttributes(attribute.Int(attrStatus, resp.StatusCode))
	if resp.StatusCode >= 400 {
		fail(span, strconv.Itoa(resp.StatusCode))
	}
	return resp, nil
}
