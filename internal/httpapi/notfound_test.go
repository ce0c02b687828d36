package httpapi

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestNotFoundDescribesThePathSafely: the 404 answer quotes the path it
// did not find within RFC 6749 §5.2's characters (a quote, a backslash or a
// non-ASCII letter by its code point) and bounded, not as sent.
func TestNotFoundDescribesThePathSafely(t *testing.T) {
	h := (&Server{}).Handler()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/caf%C3%A9/%22x%22/%5C/"+strings.Repeat("a", 500), nil))
	var body map[string]string
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	desc := body["error_description"]
	if rec.Code != 404 || !strings.HasPrefix(desc, "no such endpoint: GET /caf<U+00E9>/'x'/<U+005C>/aaa") || len(desc) > 240 {
		t.Fatalf("404 %q (%d bytes)", desc, len(desc))
	}
	for i := 0; i < len(desc); i++ {
		if c := desc[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			t.Fatalf("description %q has %q, outside RFC 6749 §5.2's set", desc, c)
		}
	}
}
