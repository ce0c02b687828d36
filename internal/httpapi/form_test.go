package httpapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

func TestParseFormBody(t *testing.T) {
	for _, tt := range []struct {
		name, body string
		ok         bool
	}{
		{"a parameter given twice is refused (RFC 6749 §3.1)", "scope=openid&scope=email", false},
		{"a malformed escape is refused", "scope=%zz", false},
		{"distinct parameters pass", "scope=openid&login_hint=alice", true},
		{"an empty body passes (the handler reports what is missing)", "", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseFormBody(tt.body)
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v", err)
			}
			if err != nil && ciba.AsError(err).Code != ciba.CodeInvalidRequest {
				t.Fatalf("code = %s", ciba.AsError(err).Code)
			}
		})
	}
}

func TestParseFormRejectsOtherContent(t *testing.T) {
	for name, req := range map[string]*http.Request{
		"a JSON body is refused":     post("application/json", `{"scope":"openid"}`),
		"no content type is refused": post("", "scope=openid"),
		"a body over 64 KiB is refused": post("application/x-www-form-urlencoded",
			"scope="+strings.Repeat("a", maxForm)),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := parseForm(httptest.NewRecorder(), req); ciba.AsError(err).Code != ciba.CodeInvalidRequest {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

func post(ct, body string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/token", strings.NewReader(body))
	if ct != "" {
		r.Header.Set("Content-Type", ct)
	}
	return r
}

func TestClaimGetter(t *testing.T) {
	get, err := claimGetter(map[string]any{"scope": "openid", "requested_expiry": json.Number("120"), "login_hint": "alice"})
	if err != nil || get("requested_expiry") != "120" || get("scope") != "openid" || get("user_code") != "" {
		t.Fatalf("get = %v", err)
	}
	// authorization_details: an array is passed on as JSON text, a string
	// as it is.
	get, err = claimGetter(map[string]any{"authorization_details": []any{map[string]any{"type": "a", "n": json.Number("1.50")}}})
	if err != nil || get("authorization_details") != `[{"n":1.50,"type":"a"}]` {
		t.Fatalf("authorization_details = %q, %v", get("authorization_details"), err)
	}
	get, err = claimGetter(map[string]any{"authorization_details": `[{"type":"a"}]`})
	if err != nil || get("authorization_details") != `[{"type":"a"}]` {
		t.Fatalf("authorization_details = %q, %v", get("authorization_details"), err)
	}
	for name, claims := range map[string]map[string]any{
		"a numeric scope is refused":        {"scope": json.Number("1")},
		"an array login_hint is refused":    {"login_hint": []any{"a"}},
		"an object binding_message refused": {"binding_message": map[string]any{}},
	} {
		if _, err := claimGetter(claims); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestWriteErrorIsRFC6749JSON(t *testing.T) {
	w := httptest.NewRecorder()
	writeError(w, ciba.Errorf(ciba.CodeInvalidScope, "scope must include openid"))
	if w.Code != 400 || w.Header().Get("Cache-Control") != "no-store" || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, headers %v", w.Code, w.Header())
	}
	var body map[string]string
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body["error"] != "invalid_scope" || body["error_description"] == "" {
		t.Fatalf("body %s", w.Body)
	}
	w = httptest.NewRecorder()
	writeError(w, ciba.ErrAuthorizationPending)
	if w.Body.String() != `{"error":"authorization_pending"}` {
		t.Fatalf("pending body %q", w.Body)
	}
}

func TestParseCallback(t *testing.T) {
	for _, tt := range []struct {
		body string
		ok   bool
	}{
		{`{"status":"approved"}`, true},
		{`{"status":"denied","reason":"not me"}`, true},
		{`{"status":"SUCCEED"}`, false},
		{`{}`, false},
		{`not json`, false},
		{`{"status":"denied","reason":"` + strings.Repeat("x", 201) + `"}`, false},
		{`{"status":"approved","authorization_details_digest":"` + strings.Repeat("A", 43) + `"}`, true},
		{`{"status":"approved","authorization_details_digest":"` + strings.Repeat("A", 65) + `"}`, false},
	} {
		if _, err := parseCallback([]byte(tt.body)); (err == nil) != tt.ok {
			t.Errorf("parseCallback(%.40s) err = %v", tt.body, err)
		}
	}
}

// FuzzParseFormBody: the form parser never panics, and what it accepts has
// no repeated parameter.
func FuzzParseFormBody(f *testing.F) {
	for _, s := range []string{"scope=openid&login_hint=alice", "a=1&a=2", "%zz", "request=eyJ.eyJ.sig", "=&&=", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		form, err := parseFormBody(body)
		if err != nil {
			return
		}
		for k, v := range form {
			if len(v) != 1 {
				t.Fatalf("parameter %q accepted %d times", k, len(v))
			}
		}
	})
}

// FuzzParseCallback: the callback parser never panics and accepts only the
// two statuses.
func FuzzParseCallback(f *testing.F) {
	for _, s := range []string{`{"status":"approved"}`, `{"status":"denied","reason":"x"}`, `{"status":null}`, `[]`, `{"status":1}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		cb, err := parseCallback(body)
		if err == nil && cb.Status != "approved" && cb.Status != "denied" {
			t.Fatalf("accepted status %q", cb.Status)
		}
	})
}

// FuzzClaimGetter: request-object claims of any JSON shape never panic.
func FuzzClaimGetter(f *testing.F) {
	f.Add(`{"scope":"openid","requested_expiry":120,"login_hint":"alice"}`)
	f.Add(`{"requested_expiry":"120","binding_message":null}`)
	f.Fuzz(func(t *testing.T, doc string) {
		dec := json.NewDecoder(strings.NewReader(doc))
		dec.UseNumber()
		var claims map[string]any
		if dec.Decode(&claims) != nil {
			return
		}
		if get, err := claimGetter(claims); err == nil {
			for _, p := range authParams {
				_ = get(p)
			}
		}
	})
}

func TestErrorDescriptionsAreRFC6749Safe(t *testing.T) {
	w := httptest.NewRecorder()
	writeError(w, ciba.Errorf(ciba.CodeInvalidScope, "scope %q must include openid (CIBA §7.1) … \\ é", "x"))
	var body map[string]string
	json.Unmarshal(w.Body.Bytes(), &body)
	for _, c := range body["error_description"] {
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			t.Fatalf("error_description %q has %q, outside RFC 6749 section 5.2's set", body["error_description"], c)
		}
	}
	if !strings.Contains(body["error_description"], "(CIBA section 7.1) ...") {
		t.Fatalf("section sign not spelled out: %q", body["error_description"])
	}
}
