package ciba

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzUserKey checks the per-user limit key of a hint: it never panics, it
// is "" or a 32-character hash, and the variants a client may send for one
// user (surrounding white space, ASCII case) share it.
func FuzzUserKey(f *testing.F) {
	for _, s := range []string{"alice@example.com", " Alice@Example.COM\t", "ａｌｉｃｅ", "ali\u200bce", "\u00a0", "", "+1 555 0100", "ß", "İ", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k := userKey("", s)
		if k != "" && len(k) != 32 {
			t.Fatalf("userKey(%q) = %q: want 32 characters", s, k)
		}
		if got := userKey("", " \t"+s+"\u00a0 "); got != k {
			t.Errorf("surrounding white space changed the key of %q", s)
		}
		ascii := true
		for i := 0; i < len(s); i++ {
			if s[i] >= utf8.RuneSelf {
				ascii = false
				break
			}
		}
		if ascii && userKey("", strings.ToUpper(s)) != k {
			t.Errorf("the key of %q depends on its case", s)
		}
		if userKey(s, "x") == userKey("", s) && s != "" {
			t.Errorf("subject %q and hint %q share a key", s, s)
		}
	})
}
