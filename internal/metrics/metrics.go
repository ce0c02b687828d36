// Package metrics is cibaproxy's Prometheus instrumentation: the metric
// definitions, the /metrics handler, and decorators that measure the store
// and outbound HTTP without the measured packages knowing Prometheus.
//
// Labels are bounded: endpoints are route patterns, clients are registered
// client_ids (anything else is "-"), results are OAuth error codes or "ok".
// No auth_req_id, subject or URL is ever a label value.
package metrics

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

const namespace = "cibaproxy"

// Metrics holds cibaproxy's metrics in their own registry.
type Metrics struct {
	reg *prometheus.Registry

	httpRequests *prometheus.CounterVec
	httpDuration *prometheus.HistogramVec
	deliveries   *prometheus.CounterVec
	upstream     *prometheus.CounterVec
	upstreamDur  *prometheus.HistogramVec
	storeDur     *prometheus.HistogramVec
	storeErrors  *prometheus.CounterVec
	relayPolls   *prometheus.CounterVec
	relayPerReq  prometheus.Histogram
	validation   *prometheus.CounterVec
	limitErrors  *prometheus.CounterVec

	// requestSeries caches the series ObserveRequest updates, by
	// requestKey: looking a series up by its label values hashes them,
	// which on the poll path costs more than the update. The labels are
	// bounded (endpoints, registered clients, results), so is the cache.
	requestSeries sync.Map
}

// requestKey names the series of one ObserveRequest.
type requestKey struct{ endpoint, client, result string }

// requestSeries are the series one ObserveRequest updates.
type requestSeries struct {
	count    prometheus.Counter
	duration prometheus.Observer
}

// New returns the metrics, registered with a new registry that also holds
// the Go runtime and process collectors.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "http_requests_total",
			Help: "HTTP requests by endpoint, client and result (ok or the OAuth error code; for /token with the CIBA grant this counts polls and slow_down).",
		}, []string{"endpoint", "client", "result"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "http_request_duration_seconds",
			Help:    "Time to answer HTTP requests, by endpoint (long polls included).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5, 30, 60},
		}, []string{"endpoint"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "delivery_attempts_total",
			Help: "Delivery attempts by kind (ping, push, webhook, email) and result (ok, error).",
		}, []string{"kind", "result"}),
		upstream: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "upstream_requests_total",
			Help: "HTTP requests to the upstream identity provider by kind and result (the HTTP status class, or error when no answer came).",
		}, []string{"kind", "result"}),
		upstreamDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "upstream_request_duration_seconds",
			Help:    "Time of HTTP requests to the upstream identity provider, by kind.",
			Buckets: prometheus.DefBuckets,
		}, []string{"kind"}),
		storeDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "store_operation_duration_seconds",
			Help:    "Time of store operations, by operation.",
			Buckets: []float64{.00001, .00005, .0001, .0005, .001, .0025, .005, .01, .025, .05, .1, .5, 1},
		}, []string{"op"}),
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "store_errors_total",
			Help: "Store operations that failed for another reason than not found or a refused change, by operation.",
		}, []string{"op"}),
		relayPolls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "relay_upstream_polls_total",
			Help: "Token requests made to a CIBA upstream for relayed requests, by result (pending, slow_down, tokens, access_denied, error...). Compare with the clients' polls in cibaproxy_http_requests_total to see the shield work.",
		}, []string{"result"}),
		relayPerReq: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "relay_upstream_polls_per_request",
			Help:    "Upstream token requests a relayed request took until it ended (at most 1 + lifetime/interval, or 1 when the upstream pings).",
			Buckets: []float64{1, 2, 3, 5, 10, 20, 50, 100, 200},
		}),
		validation: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "validation_total",
			Help: "Calls of the consumption-device validation hook by result: allow, deny, or error (no verdict; validation.fail then refused or accepted the request).",
		}, []string{"result"}),
	}
	m.limitErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "limit_errors_total",
		Help: "Abuse-limit decisions that could not reach the shared store (Redis) and so allowed the request (fail open), by limit.",
	}, []string{"limit"})
	m.reg.MustRegister(m.limitErrors)
	m.reg.MustRegister(m.httpRequests, m.httpDuration, m.deliveries, m.upstream, m.upstreamDur, m.storeDur, m.storeErrors, m.relayPolls, m.relayPerReq, m.validation,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// ObserveRequest counts one answered HTTP request (httpapi.Observer).
func (m *Metrics) ObserveRequest(endpoint, client, result string, d time.Duration) {
	k := requestKey{endpoint, client, result}
	v, ok := m.requestSeries.Load(k)
	if !ok {
		v, _ = m.requestSeries.LoadOrStore(k, &requestSeries{
			count:    m.httpRequests.WithLabelValues(endpoint, client, result),
			duration: m.httpDuration.WithLabelValues(endpoint),
		})
	}
	rs := v.(*requestSeries)
	rs.count.Inc()
	rs.duration.Observe(d.Seconds())
}

// ObserveDelivery counts one delivery attempt (ciba.Observer).
func (m *Metrics) ObserveDelivery(kind string, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.deliveries.WithLabelValues(kind, result).Inc()
}

// ObserveRelayPoll counts one upstream poll of a relayed request; polls is
// the request's total when this result ended it, 0 otherwise
// (ciba.RelayObserver).
func (m *Metrics) ObserveRelayPoll(result string, polls int) {
	m.relayPolls.WithLabelValues(result).Inc()
	if polls > 0 {
		m.relayPerReq.Observe(float64(polls))
	}
}

// ObserveValidation counts one call of the validation hook by result:
// allow, deny or error (ciba.ValidationObserver).
// Any other value counts as error, so the label stays bounded.
func (m *Metrics) ObserveValidation(result string) {
	if result != "allow" && result != "deny" {
		result = "error"
	}
	m.validation.WithLabelValues(result).Inc()
}

// ObserveLimitError counts one abuse-limit decision that failed and let the
// request through (limit.FailOpen). limit is the limit's name, one of a
// few fixed ones.
func (m *Metrics) ObserveLimitError(limit string) {
	m.limitErrors.WithLabelValues(limit).Inc()
}

// WatchRequests adds a gauge of the stored requests by state and delivery
// mode. Counting walks the store, so a scrape reuses a count younger than
// maxAge.
func (m *Metrics) WatchRequests(st ciba.Store, now func() time.Time, maxAge time.Duration) {
	m.reg.MustRegister(&requestsCollector{st: st, now: now, maxAge: maxAge, desc: prometheus.NewDesc(
		prometheus.BuildFQName(namespace, "", "requests"),
		"Authentication requests held, by state (pending, approved, denied, expired, redeemed) and delivery mode.",
		[]string{"state", "mode"}, nil)})
}

// requestsCollector counts requests by walking the store, at most once per
// maxAge.
type requestsCollector struct {
	st     ciba.Store
	now    func() time.Time
	maxAge time.Duration
	desc   *prometheus.Desc

	mu     sync.Mutex
	at     time.Time
	counts map[[2]string]int
}

func (c *requestsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *requestsCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.counts == nil || c.now().Sub(c.at) >= c.maxAge {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		counts := make(map[[2]string]int)
		now := c.now()
		err := c.st.ListRequests(ctx, func(r *ciba.AuthRequest) bool {
			state := string(r.Status)
			if r.Status == ciba.StatusPending && r.Expired(now) {
				state = string(ciba.StatusExpired)
			}
			counts[[2]string{state, string(r.Mode)}]++
			return true
		})
		cancel()
		if err != nil {
			ch <- prometheus.NewInvalidMetric(c.desc, err)
			return
		}
		c.counts, c.at = counts, now
	}
	for _, st := range []ciba.Status{ciba.StatusPending, ciba.StatusApproved, ciba.StatusDenied, ciba.StatusExpired, ciba.StatusRedeemed} {
		for _, mode := range []ciba.DeliveryMode{ciba.ModePoll, ciba.ModePing, ciba.ModePush} {
			k := [2]string{string(st), string(mode)}
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(c.counts[k]), k[0], k[1])
		}
	}
}

// Transport measures the requests of an HTTP client to the upstream
// provider, labelled with kind. A nil next means http.DefaultTransport.
func (m *Metrics) Transport(kind string, next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return roundTripper{m: m, kind: kind, next: next}
}

type roundTripper struct {
	m    *Metrics
	kind string
	next http.RoundTripper
}

func (t roundTripper) RoundTrip(r *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.next.RoundTrip(r)
	t.m.upstreamDur.WithLabelValues(t.kind).Observe(time.Since(start).Seconds())
	result := "error"
	if err == nil {
		result = strconv.Itoa(resp.StatusCode/100) + "xx"
	}
	t.m.upstream.WithLabelValues(t.kind, result).Inc()
	return resp, err
}

// ParkedPolls exports n, the count of long polls held with their
// connections parked (httpapi.Parking), as cibaproxy_parked_polls.
func (m *Metrics) ParkedPolls(n func() int) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: namespace, Name: "parked_polls",
		Help: "Long polls held with their connections parked, outside net/http (no goroutine each).",
	}, func() float64 { return float64(n()) }))
}
