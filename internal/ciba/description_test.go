package ciba_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// allowedInDescription reports whether s keeps to RFC 6749 §5.2's
// error_description set: %x20-21 / %x23-5B / %x5D-7E.
func allowedInDescription(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// TestSafeDescription checks that an error_description keeps to RFC 6749
// §5.2's characters and stays readable: what lies outside is named by its
// code point rather than turned into '?' or an apostrophe that hides it.
func TestSafeDescription(t *testing.T) {
	for _, tt := range []struct{ name, in, want string }{
		{"printable ASCII is kept as it is", "scope 'x' is unknown (a-z, 0-9)", "scope 'x' is unknown (a-z, 0-9)"},
		{"the quotes of %q become apostrophes", `client "c1" is unknown`, "client 'c1' is unknown"},
		{"a section sign is spelled out", "CIBA §7.1", "CIBA section 7.1"},
		{"an ellipsis becomes three dots", "abc…", "abc..."},
		{"a non-ASCII letter is named by its code point", "café", "caf<U+00E9>"},
		{"the euro sign is named by its code point", "5 €", "5 <U+20AC>"},
		{"a backslash is named by its code point, not turned into a slash", `a\b`, "a<U+005C>b"},
		{"a control character is named by its code point", "line\none", "line<U+000A>one"},
		{"a character outside the BMP is named by its code point", "ok 😀", "ok <U+1F600>"},
		{"invalid UTF-8 is named as the replacement character", "a\xffb", "a<U+FFFD>b"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := ciba.SafeDescription(tt.in)
			if got != tt.want {
				t.Errorf("SafeDescription(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if !allowedInDescription(got) {
				t.Errorf("SafeDescription(%q) = %q has characters RFC 6749 §5.2 does not allow", tt.in, got)
			}
			if again := ciba.SafeDescription(got); again != got {
				t.Errorf("SafeDescription is not idempotent: %q then %q", got, again)
			}
		})
	}
}

// TestSafeDescriptionMax checks the bounded form: at most max bytes, ending
// in "..." when cut, and never cutting a code point's notation in two.
func TestSafeDescriptionMax(t *testing.T) {
	if got := ciba.SafeDescriptionMax("short", 10); got != "short" {
		t.Errorf("a short safe text is changed: %q", got)
	}
	got := ciba.SafeDescriptionMax(strings.Repeat("é", 100), 20)
	if got != "<U+00E9><U+00E9>..." {
		t.Errorf("SafeDescriptionMax(é×100, 20) = %q, want two whole code points and ...", got)
	}
	for n := 3; n < 40; n++ {
		got := ciba.SafeDescriptionMax("ab \"é\" \\ "+strings.Repeat("x", 30), n)
		if len(got) > n || !allowedInDescription(got) {
			t.Errorf("SafeDescriptionMax(…, %d) = %q: too long or outside the set", n, got)
		}
		if i := strings.LastIndex(got, "<"); i >= 0 && !strings.Contains(got[i:], ">") {
			t.Errorf("SafeDescriptionMax(…, %d) = %q cuts a code point", n, got)
		}
	}
}

// TestBindingMessageRefusalIsReadable checks the refusal of a binding
// message with a character outside the allowed set: the character is named
// by its code point, and the answer's JSON carries it unmangled (it was
// "binding_message contains" and three apostrophes for a double quote).
func TestBindingMessageRefusalIsReadable(t *testing.T) {
	for _, tt := range []struct {
		msg, want string
	}{
		{`Pay "10"`, "binding_message contains U+0022;"},
		{`a\b`, "binding_message contains U+005C;"},
		{"Pay <10>", "binding_message contains U+003C '<';"},
		{"ok 😀", "binding_message contains U+1F600;"},
		{"tab\there", "binding_message contains U+0009;"},
	} {
		why := ciba.ValidBindingMessage(tt.msg, 64)
		e := &ciba.Error{Code: ciba.CodeInvalidBindingMessage, Description: why}
		var body struct {
			Desc string `json:"error_description"`
		}
		if err := json.Unmarshal(e.JSON(), &body); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(body.Desc, tt.want) {
			t.Errorf("binding_message %q: error_description %q, want it to start %q", tt.msg, body.Desc, tt.want)
		}
		if !strings.HasSuffix(body.Desc, "-._+/!?#:,;'()@&%*=$ U+20AC U+00A3") {
			t.Errorf("binding_message %q: error_description %q does not list the allowed marks readably", tt.msg, body.Desc)
		}
		if !allowedInDescription(body.Desc) {
			t.Errorf("error_description %q is outside RFC 6749 §5.2's set", body.Desc)
		}
	}
}
