// Package interop runs a real, independent CIBA client — openid-client, the
// certified Node.js relying-party library — against the cibaproxy binary:
// discovery, backchannel authentication, poll and ping token retrieval, and
// ID token validation (signature against jwks_uri, iss, aud, exp …).
package interop

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/test/testutil"
)

var binary string

func TestMain(m *testing.M) {
	bin, cleanup := testutil.MustBuild()
	binary = bin
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// requireNode skips the test when node is not installed, except on CI
// (CI=true), where a missing node is a failure.
func requireNode(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is not on PATH; the interop tests need Node.js >= 20 on CI", tool)
			}
			t.Skipf("skipping the openid-client interop test: %s is not on PATH (install Node.js >= 20 to run it)", tool)
		}
	}
}

var (
	npmOnce sync.Once
	npmErr  error
)

// installDeps runs npm ci (npm install without a lockfile) once when
// node_modules lacks one of the clients: openid-client, auth0 or
// @auth0/ai.
func installDeps(t *testing.T) {
	t.Helper()
	npmOnce.Do(func() {
		have := true
		for _, pkg := range []string{"openid-client", "auth0", filepath.Join("@auth0", "ai")} {
			if _, err := os.Stat(filepath.Join("node_modules", pkg, "package.json")); err != nil {
				have = false
			}
		}
		if have {
			return
		}
		args := []string{"install", "--no-audit", "--no-fund"}
		if _, err := os.Stat("package-lock.json"); err == nil {
			args = []string{"ci", "--no-audit", "--no-fund"}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "npm", args...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			npmErr = fmt.Errorf("npm %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	})
	if npmErr != nil {
		t.Fatal(npmErr)
	}
}

// result is the JSON line ciba.mjs prints.
type result struct {
	OK              bool           `json:"ok"`
	Mode            string         `json:"mode"`
	Sub             string         `json:"sub"`
	Claims          map[string]any `json:"claims"`
	AuthReqID       string         `json:"auth_req_id"`
	TokenType       string         `json:"token_type"`
	HasAccessToken  bool           `json:"has_access_token"`
	HasRefreshToken bool           `json:"has_refresh_token"`
	Pings           int            `json:"pings"`
	// JKT and AccessToken are poll-dpop's: the thumbprint of the DPoP key
	// and the access token of the poll.
	JKT         string `json:"jkt"`
	AccessToken string `json:"access_token"`
	Refresh     *struct {
		OK          bool   `json:"ok"`
		Rotated     bool   `json:"rotated"`
		Sub         string `json:"sub"`
		TokenType   string `json:"token_type"`
		AccessToken string `json:"access_token"`
	} `json:"refresh"`
	// Userinfo is poll-dpop's: what openid-client's fetchUserInfo got with
	// the DPoP-bound access token.
	Userinfo *struct {
		Sub   string `json:"sub"`
		Email string `json:"email"`
	} `json:"userinfo"`
	Error      string `json:"error"`
	Code       string `json:"code"`
	OAuthError string `json:"error_description"`
}

// runClient runs ciba.mjs with args and returns its result line.
func runClient(t *testing.T, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", append([]string{"ciba.mjs"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	last := lines[len(lines)-1]
	var r result
	if err := json.Unmarshal([]byte(last), &r); err != nil {
		t.Fatalf("node ciba.mjs %s: no result line (%v, run error %v)\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, runErr, stdout.String(), stderr.String())
	}
	if !r.OK || runErr != nil {
		t.Fatalf("node ciba.mjs %s failed (exit: %v):\n%s\nstderr:\n%s", strings.Join(args, " "), runErr, last, stderr.String())
	}
	if stderr.Len() > 0 {
		t.Logf("ciba.mjs stderr:\n%s", stderr.String())
	}
	return r
}

func checkAlice(t *testing.T, r result, issuer, clientID string) {
	t.Helper()
	if r.Sub != "alice" {
		t.Errorf("sub = %q, want alice", r.Sub)
	}
	if email, _ := r.Claims["email"].(string); email == "" {
		t.Errorf("the ID token has no email claim although scope had email; claims: %v", r.Claims)
	}
	if iss, _ := r.Claims["iss"].(string); iss != issuer {
		t.Errorf("iss = %q, want %q", iss, issuer)
	}
	if aud := fmt.Sprint(r.Claims["aud"]); !strings.Contains(aud, clientID) {
		t.Errorf("aud = %v, want %q", r.Claims["aud"], clientID)
	}
	if r.TokenType == "" || !strings.EqualFold(r.TokenType, "bearer") {
		t.Errorf("token_type = %q, want Bearer", r.TokenType)
	}
	if !r.HasAccessToken {
		t.Error("no access_token")
	}
}

// cnfJKT returns the cnf.jkt claim of JWT access token at, read without
// checking the signature (openid-client checked the response; the test
// only reads what the token is bound to).
func cnfJKT(t *testing.T, at string) string {
	t.Helper()
	parts := strings.Split(at, ".")
	if len(parts) != 3 {
		t.Fatalf("the access token is not a JWT: %d parts", len(parts))
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatalf("access token payload: %v", err)
	}
	var c struct {
		Cnf struct {
			JKT string `json:"jkt"`
		} `json:"cnf"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatalf("access token claims: %v", err)
	}
	return c.Cnf.JKT
}

// TestOpenIDClient runs openid-client's CIBA flows (poll with
// client_secret_post and client_secret_basic, ping) against one cibaproxy
// whose webhook channel approves every request.
func TestOpenIDClient(t *testing.T) {
	t.Parallel()
	requireNode(t)
	installDeps(t)

	hook := testutil.NewWebhook(t)
	hook.AutoAnswer("approved")
	notifyPort, err := testutil.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	srv := testutil.Start(t, testutil.Options{
		Binary:     binary,
		WebhookURL: hook.URL,
		NotifyURL:  "http://127.0.0.1:" + strconv.Itoa(notifyPort) + "/notify",
	})

	t.Run("group", func(t *testing.T) {
		t.Run("poll/client_secret_post", func(t *testing.T) {
			t.Parallel()
			c := testutil.DemoPoll
			r := runClient(t, nil, "poll", srv.URL, c.ID, c.Secret, "alice")
			checkAlice(t, r, srv.URL, c.ID)
			switch {
			case !r.HasRefreshToken:
				t.Log("no refresh_token issued; refreshTokenGrant not exercised")
			case r.Refresh == nil || !r.Refresh.OK:
				t.Errorf("openid-client refreshTokenGrant did not give a new access token: %+v", r.Refresh)
			case r.Refresh.Sub != "" && r.Refresh.Sub != "alice":
				t.Errorf("refreshed ID token sub = %q, want alice", r.Refresh.Sub)
			default:
				t.Logf("openid-client refreshTokenGrant: %+v", *r.Refresh)
			}
		})
		t.Run("poll/dpop", func(t *testing.T) {
			t.Parallel()
			// openid-client's DPoP support (getDPoPHandle): the request is
			// bound with dpop_jkt, the poll and the refresh carry proofs,
			// and both access tokens are DPoP tokens bound to its key.
			c := testutil.DemoPoll
			r := runClient(t, nil, "poll-dpop", srv.URL, c.ID, c.Secret, "alice")
			if r.Sub != "alice" || !strings.EqualFold(r.TokenType, "dpop") {
				t.Fatalf("poll: sub %q token_type %q, want alice and DPoP", r.Sub, r.TokenType)
			}
			if got := cnfJKT(t, r.AccessToken); got != r.JKT || got == "" {
				t.Errorf("access token cnf.jkt = %q, want the key's thumbprint %q", got, r.JKT)
			}
			if r.Refresh == nil || !r.Refresh.OK || !r.Refresh.Rotated || !strings.EqualFold(r.Refresh.TokenType, "dpop") {
				t.Fatalf("refresh with DPoP: %+v, want a new DPoP access token and a rotated refresh token", r.Refresh)
			}
			if got := cnfJKT(t, r.Refresh.AccessToken); got != r.JKT {
				t.Errorf("refreshed access token cnf.jkt = %q, want %q", got, r.JKT)
			}
			// The scope was "openid email": userinfo releases the e-mail.
			if r.Userinfo == nil || r.Userinfo.Sub != "alice" || r.Userinfo.Email == "" {
				t.Errorf("userinfo with the DPoP-bound token: %+v, want alice's sub and e-mail", r.Userinfo)
			}
		})
		t.Run("poll/client_secret_basic", func(t *testing.T) {
			t.Parallel()
			c := testutil.DemoPoll
			r := runClient(t, []string{"CIBA_CLIENT_AUTH=basic"}, "poll", srv.URL, c.ID, c.Secret, "alice")
			checkAlice(t, r, srv.URL, c.ID)
		})
		t.Run("ping", func(t *testing.T) {
			t.Parallel()
			c := testutil.DemoPing
			r := runClient(t, nil, "ping", srv.URL, c.ID, c.Secret, "alice", strconv.Itoa(notifyPort))
			checkAlice(t, r, srv.URL, c.ID)
			if r.Pings != 1 {
				t.Errorf("the notification endpoint got %d requests before the token request, want exactly 1 ping", r.Pings)
			}
		})
	})

	for _, m := range hook.Messages() {
		if m.BindingMessage != "Code 1234" || m.LoginHint == "" || m.Subject != "alice" {
			t.Errorf("webhook message does not carry the request: %s", m.Raw)
		}
	}
}
