package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// TestReadmeDeviceWalkthrough follows the README's device flow with the
// shipped quick start, unchanged: the public client demo-device asks for a
// code with scope "openid email", polls (authorization_pending), alice
// approves on the page the README sends her to, and the next poll gets
// the tokens the README shows.
func TestReadmeDeviceWalkthrough(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile(filepath.Join(testutil.RepoRoot(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []string{
		"curl -s -d client_id=demo-device -d 'scope=openid email' http://127.0.0.1:8080/device_authorization",
		"curl -s -d client_id=demo-device -d grant_type=urn:ietf:params:oauth:grant-type:device_code",
		"sign in as alice (alice-password) and approve",
	} {
		if !strings.Contains(string(readme), step) {
			t.Fatalf("the README's device walk-through no longer says %q: update this test with it", step)
		}
	}
	srv := testutil.Start(t, testutil.Options{Binary: binary})
	demoDevice := testutil.Client{ID: "demo-device"} // public: no secret
	deviceCode, userCode := deviceStart(t, srv, demoDevice, "openid email")
	if r := devicePoll(t, srv, demoDevice, deviceCode); r.Str("error") != "authorization_pending" {
		t.Fatalf("first poll: %s", r)
	}
	p := newPage(t, srv)
	status, body, csrf := p.enter(userCode)
	if status != 200 || csrf == "" {
		t.Fatalf("confirming the code: %d\n%s", status, body)
	}
	if status, body := p.decide(userCode, csrf, "approve", "alice", "alice-password"); status != 200 || !strings.Contains(body, "Approved") {
		t.Fatalf("approving as alice: %d\n%s", status, body)
	}
	r := pollUntil(t, srv, demoDevice, deviceCode)
	for _, k := range []string{"access_token", "refresh_token", "id_token"} {
		if r.Str(k) == "" {
			t.Errorf("the token response lacks %s: %s", k, r)
		}
	}
	if r.Str("token_type") != "Bearer" || r.Str("scope") != "openid email" {
		t.Errorf("token response %s, want a Bearer token for \"openid email\" as the README shows", r)
	}
}
