package cibaup

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/upstream/idp"
)

// The parsers of the identity provider's answers: an IdP is a trusted
// sender, but a broken or compromised one must not crash cibaproxy nor hand
// its callers values they do not expect. Seeds are answers of real CIBA and
// device-flow servers (Keycloak, Authlete, node-oidc-provider shapes) and
// the edge cases of the unit tests; the corpus found by the fuzzer is kept
// in testdata/fuzz/.

// maxDuration is the longest lifetime or interval a parser may return.
const maxDuration = maxSeconds * time.Second

// FuzzParseStarted: parseStarted never panics, and an acknowledgement it
// accepts (CIBA §7.3) has what internal/ciba's relay relies on: a non-empty
// auth_req_id, an expires_in of at least one second (the client is told
// whole seconds, and a zero lifetime is refused there as a server error)
// and an interval that is zero (none) or positive, both bounded.
func FuzzParseStarted(f *testing.F) {
	for _, s := range []string{
		`{"auth_req_id":"1c266114-a1be-4252-8ad1-04986c5b9ac1","expires_in":120,"interval":2}`,        // spec §7.3 example
		`{"auth_req_id":"eyJhbGciOiJkaXIiLCJlbmMiOiJBMTI4R0NNIn0..x.y.z","expires_in":120}`,           // Keycloak: a JWE id
		`{"auth_req_id":"G31Bj6V-fFKC9rRkF8kUeqQpI5QYhNrX3UtqPTKE7Jk","expires_in":600,"interval":5}`, // Authlete
		`{"auth_req_id":"r1","expires_in":1.5,"interval":0.5}`,
		`{"auth_req_id":"r1","expires_in":120,"interval":null}`,
		`{"auth_req_id":"","expires_in":120}`,
		`{"auth_req_id":42,"expires_in":120}`,
		`{"auth_req_id":"r1","expires_in":1e300}`,
		`{"auth_req_id":"r1","expires_in":"120"}`,
		`{"auth_req_id":"r1","expires_in":120,"interval":-1}`,
		`[]`, `null`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		s, err := parseStarted(body)
		if err != nil {
			if s != (ciba.RelayStarted{}) {
				t.Fatalf("an error (%v) with a result %+v", err, s)
			}
			return
		}
		if s.ID == "" {
			t.Fatal("accepted an empty auth_req_id")
		}
		if s.ExpiresIn < time.Second || s.ExpiresIn > maxDuration {
			t.Fatalf("accepted expires_in %v", s.ExpiresIn)
		}
		if s.Interval < 0 || s.Interval > maxDuration {
			t.Fatalf("accepted interval %v", s.Interval)
		}
	})
}

// FuzzParseDeviceStarted: parseDeviceStarted never panics, and a device
// authorization response it accepts (RFC 8628 §3.2) has what the device
// relay relies on: non-empty device_code, user_code and verification_uri,
// an expires_in of at least one second, an interval zero or positive.
func FuzzParseDeviceStarted(f *testing.F) {
	for _, s := range []string{
		// RFC 8628 §3.2 example.
		`{"device_code":"GmRhmhcxhwAzkoEqiMEg_DnyEysNkuNhszIySk9eS","user_code":"WDJB-MJHT","verification_uri":"https://example.com/device","verification_uri_complete":"https://example.com/device?user_code=WDJB-MJHT","expires_in":1800,"interval":5}`,
		// Keycloak.
		`{"device_code":"c2aVg7Jv3dQ","user_code":"TAMK-XQPL","verification_uri":"https://kc.example/realms/r/device","verification_uri_complete":"https://kc.example/realms/r/device?user_code=TAMK-XQPL","expires_in":600,"interval":5}`,
		`{"device_code":"d","user_code":"u","verification_uri":"https://e/d","expires_in":1.5}`,
		`{"device_code":"d","user_code":"u","verification_uri":"https://e/d","verification_uri_complete":7,"expires_in":60}`,
		`{"device_code":"","user_code":"u","verification_uri":"https://e/d","expires_in":60}`,
		`{"device_code":"d","user_code":"u","verification_uri":"https://e/d","expires_in":0}`,
		`{}`, `[1]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		s, err := parseDeviceStarted(body)
		if err != nil {
			if s != (ciba.DeviceRelayStarted{}) {
				t.Fatalf("an error (%v) with a result %+v", err, s)
			}
			return
		}
		if s.DeviceCode == "" || s.UserCode == "" || s.VerificationURI == "" {
			t.Fatalf("accepted an empty device_code, user_code or verification_uri: %+v", s)
		}
		if s.ExpiresIn < time.Second || s.ExpiresIn > maxDuration {
			t.Fatalf("accepted expires_in %v", s.ExpiresIn)
		}
		if s.Interval < 0 || s.Interval > maxDuration {
			t.Fatalf("accepted interval %v", s.Interval)
		}
	})
}

// FuzzCheckTokens: checkTokens never panics and accepts only a JSON object
// whose access_token and token_type are non-empty strings (the body goes
// to the client unchanged).
func FuzzCheckTokens(f *testing.F) {
	for _, s := range []string{
		`{"access_token":"SlAV32hkKG","token_type":"Bearer","refresh_token":"8xLOxBtZp8","expires_in":3600,"id_token":"eyJ.eyJ.sig"}`,
		`{"access_token":"a","token_type":"DPoP"}`,
		`{"access_token":"","token_type":"Bearer"}`,
		`{"access_token":"a","token_type":"Bearer","access_token":1}`,
		`{"access_token":"a"}`, `[]`, `"x"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if checkTokens(body) != nil {
			return
		}
		var tr map[string]any
		if err := json.Unmarshal(body, &tr); err != nil || tr == nil {
			t.Fatalf("accepted a body that is not a JSON object (%v)", err)
		}
		for _, k := range []string{"access_token", "token_type"} {
			if s, ok := tr[k].(string); !ok || s == "" {
				t.Fatalf("accepted %s = %#v", k, tr[k])
			}
		}
	})
}

// FuzzRefusal: parseOAuthError never panics and accepts only an error with
// a code (RFC 6749 §5.2); refusal maps any answer without panicking, and
// what it passes on to a client — the code and the description of a
// *ciba.Error — is a code of the specifications, and a description in
// RFC 6749's character set, bounded, without the hidden values (the
// client secret and the auth_req_id).
func FuzzRefusal(f *testing.F) {
	const secret, id = "s3cr3tS3cr3tS3cr3t", "1c266114a1be42528ad104986c5b9ac1"
	for _, s := range []struct {
		status int
		body   string
	}{
		{400, `{"error":"authorization_pending","error_description":"The authorization request is still pending"}`},
		{400, `{"error":"slow_down"}`},
		{400, `{"error":"access_denied","error_description":"The end-user denied the authorization request."}`},
		{400, `{"error":"expired_token","error_description":"auth_req_id ` + id + ` has expired"}`},
		{400, `{"error":"invalid_request","error_description":"client_secret ` + secret + ` \"quoted\" \\ § …"}`},
		{401, `{"error":"invalid_client","error_description":"Invalid client or Invalid client credentials"}`},
		{400, `{"error":"unknown_user_id","error_description":"` + strings.Repeat("x", 500) + `"}`},
		{503, `{"error":"temporarily_unavailable"}`},
		{400, `{"error":""}`},
		{400, `<html>Bad Request</html>`},
		{429, ``},
	} {
		f.Add(s.status, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		if oe, ok := parseOAuthError(body); ok && oe.Code == "" {
			t.Fatal("accepted an error without a code")
		}
		creds := Credentials{Credentials: idp.Credentials{ClientID: "cibaproxy-at-idp", ClientSecret: secret}}
		err := refusal("token request", "client-1", creds, status, body, []string{secret, id})
		if err == nil {
			t.Fatal("refusal returned no error")
		}
		e, ok := err.(*ciba.Error)
		if !ok {
			return
		}
		if !forClient(e.Code) {
			t.Fatalf("passed the code %q to the client", e.Code)
		}
		d := e.Description
		if len(d) > len("the identity provider answered: ")+maxDescription {
			t.Fatalf("description of %d bytes", len(d))
		}
		if strings.Contains(d, secret) || strings.Contains(d, id) {
			t.Fatalf("description %q carries a hidden value", d)
		}
		for _, r := range d {
			if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
				t.Fatalf("description %q has the character %q, outside RFC 6749 §5.2", d, r)
			}
		}
	})
}
