package interop

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// deviceClients are appended to examples/quickstart.yaml: a public device
// client and a confidential one.
const deviceClients = `
  - client_id: demo-tv
    client_name: Demo TV
    token_endpoint_auth_methods: [none]
    device_authorization: true
  - client_id: demo-cli
    client_name: Demo CLI client
    client_secret: demo-cli-secret
    device_authorization: true

device:
  interval: 1s
`

// shown is device.mjs's first line: what the device shows the user.
type shown struct {
	Step                    string `json:"step"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete"`
	ExpiresIn               int    `json:"expires_in"`
	Interval                int    `json:"interval"`
}

// runDevice runs device.mjs; approve is called with its first line, and the
// final result line is returned.
func runDevice(t *testing.T, approve func(shown), args ...string) result {
	t.Helper()
	return runDeviceEnv(t, nil, approve, args...)
}

// runDeviceEnv is runDevice with env added to the script's environment.
func runDeviceEnv(t *testing.T, env []string, approve func(shown), args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", append([]string{"device.mjs"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
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
	if !lines.Scan() {
		_ = cmd.Process.Kill()
		t.Fatalf("device.mjs printed nothing\nstderr:\n%s", stderr.String())
	}
	var s shown
	if err := json.Unmarshal(lines.Bytes(), &s); err != nil || s.Step != "show" {
		_ = cmd.Process.Kill()
		t.Fatalf("device.mjs first line %q: %v\nstderr:\n%s", lines.Text(), err, stderr.String())
	}
	approve(s)
	var last string
	for lines.Scan() {
		last = lines.Text()
	}
	_, _ = io.Copy(io.Discard, out)
	waitErr := cmd.Wait()
	var r result
	if err := json.Unmarshal([]byte(last), &r); err != nil || !r.OK || waitErr != nil {
		t.Fatalf("device.mjs failed (%v, %v): %s\nstderr:\n%s", err, waitErr, last, stderr.String())
	}
	return r
}

// approveOverHTTP approves on the verification page as alice, with a plain
// HTTP client keeping cookies (test/browser does it in Chromium).
func approveOverHTTP(t *testing.T, s shown) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: testutil.CallTimeout}
	csrf := regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	step := func(method, target string, form url.Values) string {
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, _ := http.NewRequest(method, target, body)
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s %s: %d\n%s", method, target, resp.StatusCode, b)
		}
		return string(b)
	}
	page := step(http.MethodGet, s.VerificationURIComplete, nil)
	m := csrf.FindStringSubmatch(page)
	if m == nil || !strings.Contains(page, s.UserCode) {
		t.Fatalf("verification page without the code or form:\n%s", page)
	}
	page = step(http.MethodPost, s.VerificationURI, url.Values{"csrf": {m[1]}, "user_code": {s.UserCode}, "action": {"continue"}})
	if m = csrf.FindStringSubmatch(page); m == nil {
		t.Fatalf("no approval form:\n%s", page)
	}
	page = step(http.MethodPost, s.VerificationURI, url.Values{"csrf": {m[1]}, "user_code": {s.UserCode}, "action": {"approve"}, "username": {"alice"}, "password": {"alice-password"}})
	if !strings.Contains(page, "approved") {
		t.Fatalf("not approved:\n%s", page)
	}
}

// TestOpenIDClientDevice runs openid-client's device flow (RFC 8628), as a
// public and as a confidential client, against cibaproxy's local upstream,
// and redeems the refresh token once with refreshTokenGrant.
func TestOpenIDClientDevice(t *testing.T) {
	t.Parallel()
	requireNode(t)
	installDeps(t)
	base, err := os.ReadFile(testutil.QuickstartConfig())
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "device.yaml")
	if err := os.WriteFile(cfg, append(base, deviceClients...), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := testutil.Start(t, testutil.Options{Binary: binary, Config: cfg})

	for _, tc := range []struct {
		name string
		args []string
		id   string
	}{
		{"public client", []string{srv.URL, "demo-tv"}, "demo-tv"},
		{"client_secret_basic", []string{srv.URL, "demo-cli", "demo-cli-secret"}, "demo-cli"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runDevice(t, func(s shown) {
				if s.VerificationURI != srv.URL+"/device" || s.VerificationURIComplete != s.VerificationURI+"?user_code="+s.UserCode || s.Interval != 1 || s.ExpiresIn != 600 {
					t.Errorf("device authorization response %+v", s)
				}
				approveOverHTTP(t, s)
			}, tc.args...)
			checkAlice(t, r, srv.URL, tc.id)
			// The refresh token it was given works for it, public or not,
			// and is rotated.
			if !r.HasRefreshToken || r.Refresh == nil || !r.Refresh.OK || !r.Refresh.Rotated || (r.Refresh.Sub != "" && r.Refresh.Sub != "alice") {
				t.Errorf("openid-client refreshTokenGrant as %s: refresh_token given %v, refresh %+v; want a new access and refresh token", tc.id, r.HasRefreshToken, r.Refresh)
			}
		})
	}
	// openid-client's DPoP support on the device grant, public client:
	// the device request is bound with dpop_jkt, the poll and the refresh
	// carry proofs, and the tokens are DPoP tokens bound to its key.
	t.Run("public client with DPoP", func(t *testing.T) {
		r := runDeviceEnv(t, []string{"DEVICE_DPOP=1"}, func(s shown) { approveOverHTTP(t, s) }, srv.URL, "demo-tv")
		if r.Sub != "alice" || !strings.EqualFold(r.TokenType, "dpop") || r.JKT == "" || cnfJKT(t, r.AccessToken) != r.JKT {
			t.Fatalf("device tokens: sub %q token_type %q cnf.jkt %q, want alice, DPoP, %q", r.Sub, r.TokenType, cnfJKT(t, r.AccessToken), r.JKT)
		}
		if r.Refresh == nil || !r.Refresh.OK || !r.Refresh.Rotated || !strings.EqualFold(r.Refresh.TokenType, "dpop") || cnfJKT(t, r.Refresh.AccessToken) != r.JKT {
			t.Fatalf("refresh with DPoP: %+v, want a DPoP access token bound to %q", r.Refresh, r.JKT)
		}
	})
}
