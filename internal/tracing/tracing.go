// Package tracing gives cibaproxy OpenTelemetry traces: a server span per
// HTTP request, a client span per outbound call (upstream provider, ping and
// push, webhook) with the W3C traceparent sent along, and spans for the
// background work on a request (channel, upstream polls, delivery) in the
// trace of the request that created it.
//
// Traces are off unless an OTLP/HTTP endpoint is configured; off, every
// method is a no-op and the HTTP handler and transports are returned
// unwrapped. Nothing here is global: the tracer provider is this package's
// own, never installed with otel.SetTracerProvider.
//
// Spans never hold a secret: no query, path, header or body of a request or
// of an outbound call is recorded (outbound URLs by scheme and host only),
// no auth_req_id, no token, and errors only by their type.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"reflect"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// ServiceName is the service.name of every span.
const ServiceName = "cibaproxy"

// instrumentation is the name of the tracer.
const instrumentation = "github.com/cibaproxy/cibaproxy/internal/tracing"

// Config configures New.
type Config struct {
	// Endpoint is the OTLP/HTTP traces URL of a collector; a URL without a
	// path gets /v1/traces. Empty: tracing is off and costs nothing.
	// Plain http is refused unless the host is loopback or Insecure is set
	// (the configuration checks the same).
	Endpoint string
	// Insecure allows plain http to a collector that is not on loopback.
	Insecure bool
	// SampleRatio is the fraction of new traces recorded, 0 to 1. A
	// request whose caller sent a traceparent follows the caller's
	// decision (ParentBased), so a trace is never cut in the middle.
	SampleRatio float64
	// ServiceVersion is the service.version of every span.
	ServiceVersion string
	// Logger receives export failures (at warn); nil discards them. They
	// are not sent to OpenTelemetry's global error handler.
	Logger *slog.Logger
}

// Tracing is the tracer provider of one server and the instrumentation
// built on it. A nil or zero *Tracing is off.
type Tracing struct {
	provider trace.TracerProvider
	tracer   trace.Tracer
	prop     propagation.TraceContext
	// shutdown flushes and stops the exporter; nil when off.
	shutdown func(context.Context) error
}

// New returns the tracing cfg asks for: off (a no-op provider) with an
// empty endpoint, otherwise spans batched to the OTLP/HTTP exporter.
func New(ctx context.Context, cfg Config) (*Tracing, error) {
	if cfg.Endpoint == "" {
		return off(), nil
	}
	endpoint, err := exportURL(cfg.Endpoint, cfg.Insecure)
	if err != nil {
		return nil, err
	}
	opts := []otlptracehttp.Option{otlptracehttp.WithEndpointURL(endpoint)}
	if strings.HasPrefix(endpoint, "http://") {
		opts = append(opts, otlptracehttp.WithInsecure())
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("tracing: OTLP exporter: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return newWith(ctx, cfg, sdktrace.WithBatcher(loggingExporter{SpanExporter: exp, log: log}))
}

// newWith builds an enabled Tracing whose spans go to the processor
// option proc (the batcher in production, a synchronous in-memory
// exporter in tests).
func newWith(ctx context.Context, cfg Config, proc sdktrace.TracerProviderOption) (*Tracing, error) {
	if cfg.SampleRatio < 0 || cfg.SampleRatio > 1 {
		return nil, fmt.Errorf("tracing: sample ratio %g is not between 0 and 1", cfg.SampleRatio)
	}
	attrs := []attribute.KeyValue{attribute.String("service.name", ServiceName)}
	if cfg.ServiceVersion != "" {
		attrs = append(attrs, attribute.String("service.version", cfg.ServiceVersion))
	}
	// OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME, set by the operator,
	// win over the defaults.
	res, err := resource.New(ctx, resource.WithTelemetrySDK(), resource.WithAttributes(attrs...), resource.WithFromEnv())
	if err != nil {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(proc, sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.SampleRatio))))
	return &Tracing{provider: tp, tracer: tp.Tracer(instrumentation), shutdown: tp.Shutdown}, nil
}

// off is the disabled Tracing.
func off() *Tracing {
	tp := noop.NewTracerProvider()
	return &Tracing{provider: tp, tracer: tp.Tracer(instrumentation)}
}

// exportURL checks the endpoint and adds the default path.
func exportURL(raw string, insecure bool) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Scheme != "http" && u.Scheme != "https" {
		return "", errors.New("tracing: the OTLP endpoint must be an absolute http or https URL")
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", errors.New("tracing: the OTLP endpoint must not have user info, a query or a fragment")
	}
	if u.Scheme == "http" && !insecure && !loopback(u.Hostname()) {
		return "", fmt.Errorf("tracing: plain http to %s is not loopback; use https or allow it as insecure", u.Host)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/v1/traces"
	}
	return u.String(), nil
}

// loopback reports whether host names the local machine.
func loopback(host string) bool {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// Enabled reports whether spans are recorded and exported.
func (t *Tracing) Enabled() bool { return t != nil && t.shutdown != nil }

// TracerProvider is the provider spans come from, for libraries that take
// one. It is never installed globally.
func (t *Tracing) TracerProvider() trace.TracerProvider {
	if t == nil {
		return noop.NewTracerProvider()
	}
	return t.provider
}

// Tracer is cibaproxy's tracer.
func (t *Tracing) Tracer() trace.Tracer { return t.TracerProvider().Tracer(instrumentation) }

// Shutdown exports the spans still buffered and stops the exporter, within
// ctx. Spans started afterwards are dropped.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if !t.Enabled() {
		return nil
	}
	if err := t.shutdown(ctx); err != nil {
		return fmt.Errorf("tracing: shutdown: %w", err)
	}
	return nil
}

// TraceParent returns the W3C traceparent header value of the span ctx
// carries, or "" when there is none (tracing off, say). It is what
// ciba.Deps.Trace wants.
func (t *Tracing) TraceParent(ctx context.Context) string {
	if !t.Enabled() || !trace.SpanContextFromContext(ctx).IsValid() {
		return ""
	}
	c := propagation.MapCarrier{}
	t.prop.Inject(ctx, c)
	return c.Get("traceparent")
}

// StartSpan starts an internal span named name for background work, as a
// child of traceParent (the span that created the request, long ended) or
// as the root of a new trace when traceParent is "" or malformed. The
// returned function ends it, marked failed when err is not nil (by the
// error's type only: its text may quote a URL). It is what
// ciba.Deps.StartSpan wants.
func (t *Tracing) StartSpan(ctx context.Context, name, traceParent string) (context.Context, func(err error)) {
	if !t.Enabled() {
		return ctx, func(error) {}
	}
	if traceParent != "" {
		ctx = t.prop.Extract(ctx, propagation.MapCarrier{"traceparent": traceParent})
	}
	ctx, span := t.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindInternal))
	return ctx, func(err error) {
		if err != nil {
			fail(span, errorType(err))
		}
		span.End()
	}
}

// ClientAttr is the span attribute naming the authenticated client.
const ClientAttr = "client_id"

// SetClient records the authenticated client_id on the span ctx carries
// (the server span of the request). Without a recording span it does
// nothing.
func SetClient(ctx context.Context, clientID string) {
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.SetAttributes(attribute.String(ClientAttr, clientID))
	}
}

// fail marks span failed with error.type why.
func fail(span trace.Span, why string) {
	span.SetAttributes(attribute.String("error.type", why))
	span.SetStatus(codes.Error, why)
}

// errorType names err by its Go type, the innermost of a wrapped chain of
// one, as error.type: never the text, which may quote a URL.
func errorType(err error) string {
	for {
		name := reflect.TypeOf(err).String()
		next := errors.Unwrap(err)
		if next == nil || name != "*fmt.wrapError" {
			return name
		}
		err = next
	}
}

// loggingExporter logs failed exports with cibaproxy's logger instead of
// OpenTelemetry's global error handler.
type loggingExporter struct {
	sdktrace.SpanExporter
	log *slog.Logger
}

func (e loggingExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	if err := e.SpanExporter.ExportSpans(ctx, spans); err != nil {
		e.log.LogAttrs(ctx, slog.LevelWarn, "tracing: export failed; the spans are dropped",
			slog.Int("spans", len(spans)), slog.Any("error", err))
	}
	return nil
}
