package browser

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// deviceConfig is examples/quickstart.yaml with a public device client.
const deviceConfig = `
  - client_id: demo-tv
    client_name: Demo TV
    token_endpoint_auth_methods: [none]
    device_authorization: true

device:
  interval: 1s
`

// deviceScript is openid-client's device flow (test/interop/device.mjs);
// it needs test/interop's node_modules (make interop-deps).
func deviceScript(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "interop"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("node"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("node is not on PATH")
		}
		t.Skip("skipping: node is not on PATH")
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "openid-client", "package.json")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("openid-client is not installed in test/interop (make interop-deps): %v", err)
		}
		t.Skip("skipping: openid-client is not installed in test/interop (make interop-deps)")
	}
	return dir
}

// TestDeviceFlowInBrowser runs a real device-flow client (openid-client's
// initiateDeviceAuthorization and pollDeviceAuthorizationGrant) against
// cibaproxy, while the user, in headless Chromium, opens
// verification_uri_complete, confirms the code, signs in with username and
// password and approves. The client then gets tokens whose ID token it has
// validated, for the user who approved.
func TestDeviceFlowInBrowser(t *testing.T) {
	dir := deviceScript(t)
	browser := startChromium(t)
	base, err := os.ReadFile(testutil.QuickstartConfig())
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "device.yaml")
	if err := os.WriteFile(cfg, append(base, deviceConfig...), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := testutil.Start(t, testutil.Options{Binary: binary, Config: cfg})

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "device.mjs", srv.URL, "demo-tv")
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	lines := bufio.NewScanner(out)
	var shown struct {
		UserCode                string `json:"user_code"`
		VerificationURIComplete string `json:"verification_uri_complete"`
	}
	if !lines.Scan() || json.Unmarshal(lines.Bytes(), &shown) != nil || shown.UserCode == "" {
		t.Fatalf("device.mjs first line %q\nstderr:\n%s", lines.Text(), stderr.String())
	}

	b := newTab(t, browser)
	if s := b.open(shown.VerificationURIComplete); s != http.StatusOK {
		t.Fatalf("GET %s: %d", shown.VerificationURIComplete, s)
	}
	b.mustShow("code entry", "Enter the code shown on your device")
	if s := b.click(`button[value=continue]`); s != http.StatusOK {
		t.Fatalf("continue: %d\n%s", s, b.text())
	}
	b.mustShow("approval form", "Demo TV", shown.UserCode, "Confirm who you are", "Your email address")
	b.do("sign in", chromedp.SendKeys(chromedp.CSS(`#username`), "alice"), chromedp.SendKeys(chromedp.CSS(passwordInput), "wrong-password"))
	if s := b.click(approveButton); s != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d", s)
	}
	b.mustShow("wrong password", "not right")
	b.do("sign in again", chromedp.SendKeys(chromedp.CSS(`#username`), "alice"), chromedp.SendKeys(chromedp.CSS(passwordInput), "alice-password"))
	if s := b.click(approveButton); s != http.StatusOK {
		t.Fatalf("approve: %d\n%s", s, b.text())
	}
	b.mustShow("approved", "You approved the sign-in of Demo TV")

	var last string
	for lines.Scan() {
		last = lines.Text()
	}
	_, _ = io.Copy(io.Discard, out)
	var r struct {
		OK     bool           `json:"ok"`
		Sub    string         `json:"sub"`
		Claims map[string]any `json:"claims"`
	}
	if err := json.Unmarshal([]byte(last), &r); err != nil || !r.OK {
		t.Fatalf("device.mjs: %s\nstderr:\n%s", last, stderr.String())
	}
	if r.Sub != "alice" || r.Claims["aud"] != "demo-tv" || r.Claims["iss"] != srv.URL {
		t.Errorf("ID token sub %q claims %v", r.Sub, r.Claims)
	}

	// The used code cannot be approved again, in the same or another browser.
	b2 := newTab(t, browser)
	b2.open(shown.VerificationURIComplete)
	if s := b2.click(`button[value=continue]`); s != http.StatusConflict {
		t.Fatalf("the used code: %d, want 409\n%s", s, b2.text())
	}
	if !strings.Contains(b2.text(), "already used") {
		t.Errorf("used code page: %s", b2.text())
	}
}
