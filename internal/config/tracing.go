package config

import (
	"math"
	"net"
	"net/url"
	"strings"

	"github.com/cibaproxy/cibaproxy/internal/clientmeta"
)

// Tracing configures OpenTelemetry traces of the requests and of the work
// done for them in the background (channel, upstream, delivery), exported
// with OTLP over HTTP. Off by default.
type Tracing struct {
	// OTLPEndpoint is the OTLP/HTTP traces URL of a collector, e.g.
	// "http://127.0.0.1:4318/v1/traces"; a URL without a path gets
	// /v1/traces. Empty (default): no traces, at no cost. It must be https,
	// or http to a loopback address (127.0.0.1, ::1, localhost) unless
	// Insecure is set; it has no user info, query or fragment.
	OTLPEndpoint string `yaml:"otlp_endpoint"`

	// SampleRatio is the fraction of new traces that are recorded, from 0
	// to 1. Default 1 (every trace). A request that comes with a W3C
	// traceparent follows its caller's decision instead, so that a trace
	// is never cut in the middle.
	SampleRatio float64 `yaml:"sample_ratio"`

	// Insecure allows plain http to a collector that is not on loopback.
	// Spans hold no secrets, but over http anyone on the path reads (and
	// can forge) what cibaproxy reports; prefer https or a collector on
	// the same host.
	Insecure bool `yaml:"insecure"`
}

// checkTracing sets the default sample ratio and checks the endpoint. The
// messages do not quote the URL.
func (v *validator) checkTracing(t *Tracing) {
	if !v.src.set["tracing.sample_ratio"] {
		t.SampleRatio = 1
	}
	if math.IsNaN(t.SampleRatio) || t.SampleRatio < 0 || t.SampleRatio > 1 {
		v.fail("tracing.sample_ratio", "must be a number from 0 to 1, got %g", t.SampleRatio)
	}
	if t.OTLPEndpoint == "" {
		return
	}
	if msg := clientmeta.CheckHTTPURL(t.OTLPEndpoint); msg != "" {
		v.fail("tracing.otlp_endpoint", "%s", msg)
		return
	}
	u, _ := url.Parse(t.OTLPEndpoint)
	switch {
	case u.User != nil:
		v.fail("tracing.otlp_endpoint", "must not hold user info (\"user:password@\"): credentials in a URL end up in logs; use https and network controls instead")
	case u.RawQuery != "" || u.ForceQuery:
		v.fail("tracing.otlp_endpoint", "must not have a query (\"?…\")")
	case u.Scheme == "http" && !t.Insecure && !loopbackHost(u.Hostname()):
		v.fail("tracing.otlp_endpoint", "plain http is allowed only to a loopback address (127.0.0.1, ::1, localhost); use https, or set tracing.insecure: true")
	}
}

// loopbackHost reports whether host names the local machine.
func loopbackHost(host string) bool {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
