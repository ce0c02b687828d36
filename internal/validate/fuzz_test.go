package validate_test

import (
	"encoding/json"
	"testing"
	"unicode/utf8"

	"github.com/cibaproxy/cibaproxy/internal/validate"
)

// FuzzParseAnswer: the parser of the hook's answer never panics, refuses
// anything over MaxAnswer or not UTF-8, and what it accepts is a JSON
// object holding only "allow" (a boolean) and "reason" (a string) that
// says what it returned.
func FuzzParseAnswer(f *testing.F) {
	for _, s := range []string{
		`{"allow":true}`, `{"allow":false,"reason":"terminal not registered"}`, `{"reason":"x","allow":false}`,
		`{"allow":true,"allow":false}`, `{"allow":"true"}`, `{"allow":true,"extra":{}}`, `{"allow":true}{}`,
		`[true]`, `null`, ``, `{"allow":false,"reason":"\u0000\ud800"}`, "{\"allow\":true,\"reason\":\"\xff\"}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := validate.ParseAnswer(b)
		if err != nil {
			return
		}
		if len(b) > validate.MaxAnswer || !utf8.Valid(b) {
			t.Fatalf("accepted %d bytes (valid UTF-8: %v)", len(b), utf8.Valid(b))
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("accepted %q, which is not a JSON object: %v", b, err)
		}
		var allow bool
		if err := json.Unmarshal(m["allow"], &allow); err != nil || allow != v.Allow {
			t.Fatalf("accepted %q as allow=%v", b, v.Allow)
		}
		for k := range m {
			if k != "allow" && k != "reason" {
				t.Fatalf("accepted %q with member %q", b, k)
			}
		}
		if raw, ok := m["reason"]; ok {
			var reason string
			if err := json.Unmarshal(raw, &reason); err != nil || reason != v.Reason {
				t.Fatalf("accepted %q with reason %q", b, v.Reason)
			}
		} else if v.Reason != "" {
			t.Fatalf("accepted %q with a reason it does not hold", b)
		}
	})
}
