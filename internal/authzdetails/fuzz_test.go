package authzdetails

import (
	"bytes"
	"errors"
	"testing"
	"unicode/utf8"
)

// FuzzParse: Parse never panics, refuses only with an *Error whose
// description is plain ASCII, and a list it accepts keeps its bounds, has a
// string type on every element, and survives Canonical and FromJSON with
// the same digest. Seeds are in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`[{"type":"a"}]`,
		`"[{\"type\":\"a\",\"actions\":[\"x\"]}]"`,
		`[{"type":"a","n":1e400,"m":-0.0}]`,
		`[{"type":"a","type":"b"}]`,
	} {
		f.Add(s)
	}
	lim := Limits{MaxBytes: 1024, MaxCount: 4}
	f.Fuzz(func(t *testing.T, value string) {
		l, err := Parse(value, lim)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T %v", err, err)
			}
			d := e.Description()
			if !utf8.ValidString(d) || bytes.ContainsAny([]byte(d), "\"\\") {
				t.Fatalf("description %q", d)
			}
			return
		}
		if len(l) == 0 || len(l) > lim.MaxCount || len(value) > lim.MaxBytes {
			t.Fatalf("accepted %d elements from %d bytes", len(l), len(value))
		}
		for _, d := range l {
			if d.Type() == "" {
				t.Fatalf("element without a type: %v", d)
			}
		}
		back, err := FromJSON(l.Canonical())
		if err != nil {
			t.Fatalf("FromJSON(Canonical): %v", err)
		}
		if back.Digest() != l.Digest() {
			t.Fatalf("digest changed over Canonical: %s", l.Canonical())
		}
		again, err := Parse(string(l.Canonical()), Limits{MaxBytes: 1 << 20, MaxCount: lim.MaxCount})
		if err != nil {
			t.Fatalf("canonical form refused: %v: %s", err, l.Canonical())
		}
		if again.Digest() != l.Digest() {
			t.Fatal("digest changed over Parse(Canonical)")
		}
	})
}
