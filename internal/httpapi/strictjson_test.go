package httpapi

import (
	"strings"
	"testing"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// TestParseCallbackRefusesRepeatedMembers checks the callback body the authentication device
// sends: a member given twice is refused, whichever value comes last, so
// {"status":"denied","status":"approved"} cannot approve.
func TestParseCallbackRefusesRepeatedMembers(t *testing.T) {
	for _, tt := range []struct {
		name, body   string
		status, desc string // desc: a part of the refusal's description; "" accepts
	}{
		{name: "approved is accepted", body: `{"status":"approved"}`, status: "approved"},
		{name: "denied with a reason is accepted", body: `{"status":"denied","reason":"not me"}`, status: "denied"},
		{name: "an unknown member is ignored", body: `{"status":"approved","device":"phone"}`, status: "approved"},
		{name: "status twice is refused even when the last copy approves", body: `{"status":"denied","status":"approved"}`,
			desc: `the member "status" more than once`},
		{name: "status twice with the same value is refused", body: `{"status":"approved","status":"approved"}`,
			desc: `the member "status" more than once`},
		{name: "reason twice is refused", body: `{"status":"denied","reason":"a","reason":"b"}`,
			desc: `the member "reason" more than once`},
		{name: "a name that differs only in case is not status", body: `{"STATUS":"approved"}`,
			desc: "status is required"},
		{name: "a differently cased copy does not override status", body: `{"status":"denied","Status":"approved"}`, status: "denied"},
		{name: "invalid UTF-8 is refused", body: "{\"status\":\"approved\",\"reason\":\"\xff\"}",
			desc: "must be a JSON object"},
		{name: "not an object is refused", body: `["approved"]`, desc: "must be a JSON object"},
		{name: "trailing data is refused", body: `{"status":"approved"} {"status":"denied"}`, desc: "must be a JSON object"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cb, err := parseCallback([]byte(tt.body))
			status := cb.Status
			if tt.desc == "" {
				if err != nil || status != tt.status {
					t.Fatalf("parseCallback = %q, %v; want %q", status, err, tt.status)
				}
				return
			}
			e := ciba.AsError(err)
			if err == nil || e.Code != ciba.CodeInvalidRequest || !strings.Contains(e.Description, tt.desc) {
				t.Fatalf("parseCallback = %q, %v; want invalid_request containing %q", status, err, tt.desc)
			}
		})
	}
}

// TestDecodeBodyPing checks the upstream ping body (CIBA §10.2): its one
// member, too, may not appear twice.
func TestDecodeBodyPing(t *testing.T) {
	var ping struct {
		AuthReqID string `json:"auth_req_id"`
	}
	e := decodeBody([]byte(`{"auth_req_id":"a","auth_req_id":"b"}`), &ping, "{}")
	if e == nil || e.Code != ciba.CodeInvalidRequest || !strings.Contains(e.Description, `"auth_req_id" more than once`) {
		t.Fatalf("decodeBody = %v; want invalid_request naming auth_req_id", e)
	}
	if e := decodeBody([]byte(`{"auth_req_id":"a"}`), &ping, "{}"); e != nil || ping.AuthReqID != "a" {
		t.Fatalf("decodeBody = %v, %q; want a", e, ping.AuthReqID)
	}
}
