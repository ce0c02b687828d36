package ciba

import (
	"slices"
	"strings"
	"testing"
)

// FuzzParseLists checks the parsers of scope and acr_values: they never
// panic, and what they accept keeps every bound, with each value once and
// no white space in a value.
func FuzzParseLists(f *testing.F) {
	for _, s := range []string{"openid email openid", "", "  ", "urn:a urn:b\turn:c", "openid e\"mail", strings.Repeat("s ", 60), "\xff\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		check := func(what string, vals []string, maxN, maxLen int) {
			if len(vals) > maxN {
				t.Fatalf("%s accepted %d values of %q", what, len(vals), s)
			}
			for i, v := range vals {
				if v == "" || len(v) > maxLen || strings.ContainsAny(v, " \t\r\n") || slices.Contains(vals[:i], v) {
					t.Fatalf("%s accepted the value %q of %q", what, v, s)
				}
			}
		}
		if vals, e := ParseScope(s); e == nil {
			if len(s) > MaxScopeLength {
				t.Fatalf("ParseScope accepted %d bytes", len(s))
			}
			check("ParseScope", vals, MaxScopeValues, MaxScopeValueLength)
		} else if e.Code != CodeInvalidScope && e.Code != CodeInvalidRequest {
			t.Fatalf("ParseScope: %v", e)
		}
		if vals, e := parseACR(s); e == nil {
			if len(s) > MaxACRLength {
				t.Fatalf("parseACR accepted %d bytes", len(s))
			}
			check("parseACR", vals, MaxACRValues, MaxACRValueLength)
		} else if e.Code != CodeInvalidRequest {
			t.Fatalf("parseACR: %v", e)
		}
	})
}
