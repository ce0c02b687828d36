package config

import "testing"

// TestTracing checks the settings that are valid: tracing is off with a
// sample ratio of 1 unless told otherwise, and http is fine to loopback or
// with insecure.
func TestTracing(t *testing.T) {
	tests := []struct {
		name, section string
		want          Tracing
	}{
		{"off by default, every trace sampled once on", "", Tracing{SampleRatio: 1}},
		{"a ratio of 0 is kept, not defaulted", "tracing:\n  sample_ratio: 0", Tracing{SampleRatio: 0}},
		{"http to loopback", "tracing:\n  otlp_endpoint: http://127.0.0.1:4318\n  sample_ratio: 0.25",
			Tracing{OTLPEndpoint: "http://127.0.0.1:4318", SampleRatio: 0.25}},
		{"http to localhost", "tracing:\n  otlp_endpoint: http://localhost:4318/v1/traces",
			Tracing{OTLPEndpoint: "http://localhost:4318/v1/traces", SampleRatio: 1}},
		{"http elsewhere with insecure", "tracing:\n  otlp_endpoint: http://collector.internal:4318\n  insecure: true",
			Tracing{OTLPEndpoint: "http://collector.internal:4318", SampleRatio: 1, Insecure: true}},
		{"https anywhere", "tracing:\n  otlp_endpoint: https://collector.example.com/v1/traces",
			Tracing{OTLPEndpoint: "https://collector.example.com/v1/traces", SampleRatio: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustParse(t, doc(map[string]string{"limits": tt.section}), noEnv)
			if c.Tracing != tt.want {
				t.Errorf("tracing = %+v, want %+v", c.Tracing, tt.want)
			}
		})
	}
}
