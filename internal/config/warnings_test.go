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
	alice := "username: alice\npassword_hash: \"" + hashAlicePassword + "\"\n"
	selfEnrol := "approval:\n  passkeys:\n    self_enrollment: true\n"
	const noChannel = "no channel configured (channels.webpush, channels.email or channels.webhook.url)"
	const doesNothing = "approval.passkeys.self_enrollment is on but does nothing"
	for _, tc := range []struct {
		name, data string
		want       []string // substrings, one per warning, in order
	}{
		{"a channel and nothing else: no warning", doc(map[string]string{"channels": webhook}), nil},
		{"no channel with a CIBA client: nobody can approve", doc(nil), []string{noChannel}},
		{"no channel with a device-only client: no warning (the user comes to /device)",
			doc(map[string]string{"clients": clients("client_id: tv\ntoken_endpoint_auth_methods: [none]\ndevice_authorization: true")}), nil},
		{"self-enrolment with the default method either: no warning",
			doc(map[string]string{"channels": webhook}) + selfEnrol, nil},
		{"self-enrolment while approval.method is passkey: nobody is offered it",
			doc(map[string]string{"channels": webhook, "issuer": "issuer: https://ciba.example.com"}) + selfEnrol + "  method: passkey\n",
			[]string{doesNothing + ": it is offered only to users whose approval method is either"}},
		{"self-enrolment while approval.method is password: nobody is offered it",
			doc(map[string]string{"channels": webhook}) + selfEnrol + "  method: password\n", []string{"(approval.method is password and no user sets approval_method: either)"}},
		{"self-enrolment with password for all but one user who has either: no warning",
			doc(map[string]string{"channels": webhook, "upstream": localUsers(alice, "username: bob\npassword_hash: \""+hashBobPassword+"\"\napproval_method: either")}) +
				selfEnrol + "  method: password\n", nil},
		{"self-enrolment with every user on password: warned",
			doc(map[string]string{"channels": webhook, "upstream": localUsers(alice + "approval_method: password")}) + selfEnrol,
			[]string{doesNothing}},
		{"both at once, the channel first", doc(nil) + selfEnrol + "  method: password\n", []string{noChannel, doesNothing}},
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
