package e2e

import (
	"compress/gzip"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// otlpReceiver is an OTLP/HTTP trace collector: it decodes every
// ExportTraceServiceRequest and keeps the spans with their resource.
type otlpReceiver struct {
	URL   string
	mu    sync.Mutex
	spans []receivedSpan
}

type receivedSpan struct {
	*tracepb.Span
	resource []*commonpb.KeyValue
}

func newOTLPReceiver(t *testing.T) *otlpReceiver {
	t.Helper()
	o := &otlpReceiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			z, err := gzip.NewReader(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = z
		}
		b, err := io.ReadAll(body)
		var req coltracepb.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(b, &req)
		}
		if err != nil || r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
			t.Errorf("OTLP receiver: %s %s (%s): %v", r.Method, r.URL.Path, r.Header.Get("Content-Type"), err)
			http.Error(w, "bad export", http.StatusBadRequest)
			return
		}
		o.mu.Lock()
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					o.spans = append(o.spans, receivedSpan{Span: s, resource: rs.GetResource().GetAttributes()})
				}
			}
		}
		o.mu.Unlock()
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	t.Cleanup(srv.Close)
	o.URL = srv.URL
	return o
}

// named returns the spans called name.
func (o *otlpReceiver) named(name string) []receivedSpan {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []receivedSpan
	for _, s := range o.spans {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

func (o *otlpReceiver) all() []receivedSpan {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]receivedSpan(nil), o.spans...)
}

// attr returns the string form of attribute key of s, "" when absent.
func attr(kvs []*commonpb.KeyValue, key string) string {
	for _, kv := range kvs {
		if kv.Key == key {
			switch v := kv.Value.Value.(type) {
			case *commonpb.AnyValue_StringValue:
				return v.StringValue
			case *commonpb.AnyValue_IntValue:
				return fmt.Sprint(v.IntValue)
			default:
				return kv.Value.String()
			}
		}
	}
	return ""
}

// one returns the single span called name of the trace (any trace when
// traceID is nil), failing the test otherwise.
func (o *otlpReceiver) one(t *testing.T, name string, traceID []byte) receivedSpan {
	t.Helper()
	var found []receivedSpan
	for _, s := range o.named(name) {
		if traceID == nil || string(s.TraceId) == string(traceID) {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		var names []string
		for _, s := range o.all() {
			names = append(names, s.Name)
		}
		t.Fatalf("got %d spans %q (trace %x), want 1; all spans: %q", len(found), name, traceID, names)
	}
	return found[0]
}

// TestTraces runs a poll flow with the webhook channel and tracing on: the
// collector receives the server spans of bc-authorize and token, and the
// webhook delivery as a child of bc-authorize in its trace, its call out
// carrying the traceparent; no span holds a secret.
func TestTraces(t *testing.T) {
	t.Parallel()
	rcv := newOTLPReceiver(t)
	base, err := os.ReadFile(testutil.QuickstartConfig())
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(base) + "\ntracing:\n  otlp_endpoint: " + rcv.URL + "\n  sample_ratio: 1\n"
	path := filepath.Join(t.TempDir(), "tracing.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	// The authentication device, behind a front that notes the traceparent
	// of each webhook call.
	e := &env{t: t, hook: testutil.NewWebhook(t), notify: testutil.NewNotifier(t)}
	hookURL, _ := url.Parse(e.hook.URL)
	proxy := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: hookURL.Scheme, Host: hookURL.Host})
	var (
		mu           sync.Mutex
		traceParents []string
	)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		traceParents = append(traceParents, r.Header.Get("Traceparent"))
		mu.Unlock()
		proxy.ServeHTTP(w, r)
	}))
	defer front.Close()
	e.srv = testutil.Start(t, testutil.Options{
		Binary: binary, Config: path, WebhookURL: front.URL + hookURL.Path, NotifyURL: e.notify.URL,
		Env: []string{"OTEL_SDK_DISABLED=", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=", "OTEL_EXPORTER_OTLP_ENDPOINT="},
	})

	req := e.mustAuthorize(testutil.DemoPoll, "Traced")
	msg := e.answer(req, "approved")
	checkTokens(t, "token", e.token(testutil.DemoPoll, req.AuthReqID))
	e.srv.Stop() // a graceful stop flushes the spans

	authz := rcv.one(t, "POST /bc-authorize", nil)
	if authz.Kind != tracepb.Span_SPAN_KIND_SERVER || attr(authz.Attributes, "client_id") != testutil.DemoPoll.ID ||
		attr(authz.Attributes, "http.route") != "/bc-authorize" || attr(authz.Attributes, "http.response.status_code") != "200" {
		t.Errorf("bc-authorize span: kind %v attributes %v", authz.Kind, authz.Attributes)
	}
	if attr(authz.resource, "service.name") != "cibaproxy" {
		t.Errorf("resource %v, want service.name cibaproxy", authz.resource)
	}
	deliver := rcv.one(t, "deliver webhook", authz.TraceId)
	if string(deliver.ParentSpanId) != string(authz.SpanId) {
		t.Errorf("the webhook delivery span's parent is %x, want the bc-authorize span %x", deliver.ParentSpanId, authz.SpanId)
	}
	call := rcv.one(t, "POST webhook", authz.TraceId)
	if string(call.ParentSpanId) != string(deliver.SpanId) || call.Kind != tracepb.Span_SPAN_KIND_CLIENT {
		t.Errorf("the webhook call span is not a client span under the delivery span")
	}
	want := "00-" + hex.EncodeToString(call.TraceId) + "-" + hex.EncodeToString(call.SpanId) + "-01"
	mu.Lock()
	sent := strings.Join(traceParents, " ")
	mu.Unlock()
	if sent != want {
		t.Errorf("the webhook got traceparent %q, want %q", sent, want)
	}
	tok := rcv.one(t, "POST /token", nil)
	if attr(tok.Attributes, "client_id") != testutil.DemoPoll.ID || attr(tok.Attributes, "http.response.status_code") != "200" {
		t.Errorf("token span attributes %v", tok.Attributes)
	}

	approval := strings.TrimPrefix(msg.ApproveURL, e.srv.URL+"/approve/")
	secrets := []string{testutil.DemoPoll.Secret, req.AuthReqID, msg.Token, approval, "alice-password"}
	for _, s := range rcv.all() {
		text := s.Name + " " + s.Status.GetMessage()
		for _, kv := range s.Attributes {
			text += " " + kv.Key + "=" + kv.Value.String()
		}
		for _, ev := range s.Events {
			text += " " + ev.Name
			for _, kv := range ev.Attributes {
				text += " " + kv.Key + "=" + kv.Value.String()
			}
		}
		for _, secret := range secrets {
			if secret != "" && strings.Contains(text, secret) {
				t.Errorf("span %q holds the secret %q: %s", s.Name, secret, text)
			}
		}
	}
}
