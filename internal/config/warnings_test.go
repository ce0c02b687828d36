package config

import (
	"strings"
	"testing"
)

// TestWarnings: each warning is given when its setting does nothing or
// leaves nobody able to approve, and only then; a warning is not a problem
// (the configuration parses).
func TestWarnings(t *testing.T) {
	webhook := "channels:\n  webhook:\n    url: https://hooks.example/ciba"
	const noChannel = "no channel configured (channels.webpush, channels.email or channels.webhook.url)"
	for _, tc := range []struct {
		name, data string
		want       []string // substrings, one per warning, in order
	}{
		{"a channel and nothing else: no warning", doc(map[string]string{"channels": webhook}), nil},
		{"no channel with a CIBA client: nobody can approve", doc(nil), []string{noChannel}},
		{"no channel with a device-only client: no warning (the user comes to /device)",
			doc(map[string]string{"clients": clients("client_id: tv\ntoken_endpoint_auth_methods: [none]\ndevice_authorization: true")}), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := mustParse(t, tc.data, noEnv).Warnings()
			if len(got) != len(tc.want) {
				t.Fatalf("warnings %q, want %d of them: %q", got, len(tc.want), tc.want)
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("warning %d = %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}
