// Package idp runs a real third-party OpenID Provider — node-oidc-provider,
// configured by server.mjs in this directory — on a loopback port for
// cibaproxy's tests of its `oidc` (federation) and `ciba` (relay) upstreams.
//
// The provider serves authorization code + PKCE with refresh tokens,
// devInteractions login, CIBA (poll and ping) and the device flow, and a
// TEST-ONLY control API under /__test/ to approve or deny CIBA requests and
// count the requests it received. It keeps its keys, grants, tokens and
// pending CIBA requests in a data directory, so Kill and Restart behave like
// a crash and a restart of a real IdP.
//
// The node dependencies are installed with `cd test/idp && npm ci`. Start
// skips the test when node or those dependencies are missing, except on CI
// (CI=true), where that is a failure.
package idp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/cibaproxy/cibaproxy/internal/testport"
	"github.com/cibaproxy/cibaproxy/internal/testproc"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Grant types a Client may list in GrantTypes.
const (
	GrantAuthorizationCode = "authorization_code"
	GrantRefreshToken      = "refresh_token"
	GrantCIBA              = "urn:openid:params:grant-type:ciba"
	GrantDeviceCode        = "urn:ietf:params:oauth:grant-type:device_code"
)

// Bounds of the waits around the node process.
const (
	// StartTimeout bounds how long node may take to print "ready".
	StartTimeout = 30 * time.Second
	// StopTimeout bounds a graceful stop before the process is killed.
	StopTimeout = 10 * time.Second
	// startAttempts bounds the retries of a first start whose free port was
	// taken between the check and node's listen by a process that does not
	// reserve its ports (testport.Free reserves them against the other
	// test binaries).
	startAttempts = 3
)

// Config is what the IdP knows: its clients and its users.
type Config struct {
	// Clients are the registered OAuth clients (no dynamic registration).
	// Every one is trusted: consent is granted without a page unless the
	// authorization request says prompt=consent.
	Clients []Client `json:"clients"`
	// Accounts are the only users that exist: a login or login_hint that is
	// not one of their IDs or e-mails is refused.
	Accounts []Account `json:"accounts"`
	// DataDir keeps the signing keys, the cookie key and every grant, code,
	// token and CIBA request (store.json), so Restart keeps them. A new
	// t.TempDir() when empty.
	DataDir string `json:"data_dir"`
	// CIBAInterval, when positive, is added as "interval" (seconds) to the
	// backchannel authentication response. node-oidc-provider sends none,
	// which tells clients to poll every 5 seconds (CIBA Core §7.3). The IdP
	// does not enforce it (it never answers slow_down).
	CIBAInterval int `json:"ciba_interval,omitempty"`
	// RARTypes, when set, turns on node-oidc-provider's Rich Authorization
	// Requests (RFC 9396) for these authorization_details types: any
	// detail of one is accepted (at bc-authorize too), granted as asked
	// and carried into the access token and the token response.
	RARTypes []string `json:"rar_types,omitempty"`
}

// Client is one registered client, in the names of RFC 7591 client metadata.
type Client struct {
	// ID is client_id.
	ID string `json:"client_id"`
	// Secret is client_secret; empty for a public client (auth method none).
	Secret string `json:"client_secret,omitempty"`
	// RedirectURIs are the exact redirect_uri values allowed (code flow).
	RedirectURIs []string `json:"redirect_uris,omitempty"`
	// GrantTypes default to authorization_code and refresh_token. A CIBA
	// client lists GrantCIBA (and GrantRefreshToken for refresh tokens with
	// offline_access); response_types is ["code"] exactly when
	// authorization_code is listed.
	GrantTypes []string `json:"grant_types,omitempty"`
	// TokenEndpointAuthMethod defaults to client_secret_basic with a Secret,
	// none without. client_secret_post and client_secret_jwt work too.
	TokenEndpointAuthMethod string `json:"token_endpoint_auth_method,omitempty"`
	// IDTokenSignedResponseAlg is RS256 (the default) or ES256.
	IDTokenSignedResponseAlg string `json:"id_token_signed_response_alg,omitempty"`
	// BackchannelTokenDeliveryMode is "poll" (default) or "ping" for a CIBA
	// client. node-oidc-provider has no push mode.
	BackchannelTokenDeliveryMode string `json:"backchannel_token_delivery_mode,omitempty"`
	// BackchannelClientNotificationEndpoint receives the ping. An http
	// loopback URL is accepted although the provider only registers https
	// ones: server.mjs maps it (its one named exception).
	BackchannelClientNotificationEndpoint string `json:"backchannel_client_notification_endpoint,omitempty"`
}

// Account is one user. ID is both the login and the sub claim.
type Account struct {
	// ID is the accountId: what the login form and login_hint accept (as
	// does Email), and the subject of the tokens.
	ID string `json:"account_id"`
	// Password, when set, must be typed on the login form; when empty any
	// password is accepted (devInteractions' own behaviour).
	Password string `json:"password,omitempty"`
	// Email and EmailVerified are the email scope's claims.
	Email         string `json:"email,omitempty"`
	EmailVerified bool   `json:"email_verified,omitempty"`
	// PreferredUsername and Name are the profile scope's claims.
	PreferredUsername string `json:"preferred_username,omitempty"`
	Name              string `json:"name,omitempty"`
	// UserCode, when set, is required as user_code in CIBA requests for
	// this account (missing_user_code / invalid_user_code otherwise).
	UserCode string `json:"user_code,omitempty"`
}

// serverConfig is the JSON file server.mjs reads.
type serverConfig struct {
	Config
	Port   int    `json:"port"`
	Issuer string `json:"issuer"`
}

// IdP is one node-oidc-provider process (and its successors after Restart)
// that a test started. Its stdout and stderr are logged if the test fails.
type IdP struct {
	t          testing.TB
	dir        string // test/idp
	configPath string
	port       int
	issuer     string
	dataDir    string
	http       *http.Client

	logs testproc.Logs

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed when the current process has exited
	waitErr error
	starts  int
}

// Dir is the directory of server.mjs and node_modules (test/idp).
func Dir() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		panic("idp: no caller information")
	}
	return filepath.Dir(file)
}

// Start writes cfg for server.mjs, runs node on a free 127.0.0.1 port and
// waits for its "ready" line. The process is stopped when the test ends.
// With -short (make test-quick) the test is skipped.
func Start(t testing.TB, cfg Config) *IdP {
	t.Helper()
	if testing.Short() {
		// make test-quick: the unit tests without node.
		t.Skip("skipping with -short: the test starts node-oidc-provider")
	}
	dir := Dir()
	requireNode(t, dir)
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	p := &IdP{
		t:          t,
		dir:        dir,
		configPath: filepath.Join(t.TempDir(), "idp.json"),
		dataDir:    cfg.DataDir,
		http:       &http.Client{Timeout: 30 * time.Second},
	}
	t.Cleanup(p.cleanup)
	var err error
	for range startAttempts {
		if p.port, err = freePort(); err != nil {
			t.Fatalf("idp: %v", err)
		}
		p.issuer = "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port))
		sc := serverConfig{Config: cfg, Port: p.port, Issuer: p.issuer}
		b, merr := json.MarshalIndent(sc, "", "  ")
		if merr != nil {
			t.Fatalf("idp: encode config: %v", merr)
		}
		if werr := os.WriteFile(p.configPath, b, 0o600); werr != nil {
			t.Fatalf("idp: write config: %v", werr)
		}
		if err = p.start(); err == nil {
			return p
		}
	}
	t.Fatalf("idp: node-oidc-provider did not start: %v\n%s", err, p.logs.String())
	return nil
}

// requireNode skips (or on CI fails) the test when node or the installed
// oidc-provider package is missing.
func requireNode(t testing.TB, dir string) {
	t.Helper()
	miss := ""
	if _, err := exec.LookPath("node"); err != nil {
		miss = "node is not on PATH (install Node.js >= 20)"
	} else if _, err := os.Stat(filepath.Join(dir, "node_modules", "oidc-provider", "package.json")); err != nil {
		miss = "test/idp/node_modules is not installed (run: cd test/idp && npm ci)"
	}
	if miss == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("idp: %s", miss)
	}
	t.Skipf("skipping: the test OpenID Provider needs node-oidc-provider: %s", miss)
}

// freePort returns a TCP port on 127.0.0.1 for the node process
// (testport.Free: below the ephemeral range, never twice in a binary,
// reserved against the other test binaries; kept through Restart).
func freePort() (int, error) { return testport.Free() }

// start runs one node process and waits for "ready <issuer>".
func (p *IdP) start() error {
	p.mu.Lock()
	if p.cmd != nil {
		p.mu.Unlock()
		return errors.New("already running")
	}
	p.starts++
	fmt.Fprintf(&p.logs, "----- idp start #%d on %s (data %s)\n", p.starts, p.issuer, p.dataDir)
	cmd := exec.Command("node", "server.mjs", p.configPath)
	cmd.Dir = p.dir
	cmd.Stderr = &p.logs
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		p.mu.Unlock()
		return fmt.Errorf("stdout pipe: %w", err)
	}
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		p.mu.Unlock()
		return fmt.Errorf("start node: %w", err)
	}
	done := make(chan struct{})
	ready := make(chan struct{})
	p.cmd, p.done, p.waitErr = cmd, done, nil
	p.mu.Unlock()

	go func() {
		want := "ready " + p.issuer
		sc := bufio.NewScanner(stdout)
		signalled := false
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(&p.logs, line)
			if !signalled && line == want {
				signalled = true
				close(ready)
			}
		}
		err := cmd.Wait() // after stdout is drained, as StdoutPipe requires
		p.mu.Lock()
		p.waitErr = err
		p.mu.Unlock()
		close(done)
	}()

	timer := time.NewTimer(StartTimeout)
	defer timer.Stop()
	select {
	case <-ready:
		return nil
	case <-done:
		p.mu.Lock()
		err := p.waitErr
		p.cmd = nil
		p.mu.Unlock()
		return fmt.Errorf("node exited before it was ready: %v", err)
	case <-timer.C:
		p.end(false)
		return fmt.Errorf("no %q line within %v", "ready "+p.issuer, StartTimeout)
	}
}

// Issuer is the issuer URL, http://127.0.0.1:PORT; discovery is at
// Issuer()+"/.well-known/openid-configuration".
func (p *IdP) Issuer() string { return p.issuer }

// DataDir is the directory holding the IdP's keys and store.
func (p *IdP) DataDir() string { return p.dataDir }

// Logs returns what the node processes wrote so far.
func (p *IdP) Logs() string { return p.logs.String() }

// Kill ends the process with SIGKILL: a crash. Grants, tokens and pending
// CIBA requests stay in the data directory; the request counts are lost.
func (p *IdP) Kill() {
	p.t.Helper()
	p.end(false)
}

// Stop ends the process with SIGTERM and waits for it.
func (p *IdP) Stop() {
	p.t.Helper()
	p.end(true)
}

// Restart starts the IdP again after Kill or Stop on the same port, with the
// same data directory (same keys, grants and pending CIBA requests). It
// fails the test if the port was taken meanwhile.
func (p *IdP) Restart() {
	p.t.Helper()
	if err := p.start(); err != nil {
		p.t.Fatalf("idp: restart: %v\n%s", err, p.logs.String())
	}
}

func (p *IdP) end(graceful bool) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	testproc.End(cmd, done, graceful, StopTimeout)
	p.mu.Lock()
	err := p.waitErr
	p.cmd = nil
	p.mu.Unlock()
	testproc.Stopped(&p.logs, "idp", graceful, err)
}

func (p *IdP) cleanup() {
	p.end(true)
	if p.t.Failed() {
		p.t.Logf("idp (node-oidc-provider) output:\n%s", p.logs.String())
	}
}

// Counts are the requests the IdP received since it started or since
// ResetCounts. The /__test/ API is not counted.
type Counts struct {
	// Paths counts requests per path ("/token", "/backchannel", "/auth",
	// "/interaction/:uid", "/.well-known/openid-configuration", …).
	Paths map[string]int `json:"paths"`
	// GrantTypes counts token endpoint requests per grant_type.
	GrantTypes map[string]int `json:"grant_types"`
	// TokenErrors counts token endpoint error answers per error code
	// (authorization_pending, invalid_grant, …).
	TokenErrors map[string]int `json:"token_errors"`
}

// Counts fetches the request counts.
func (p *IdP) Counts(ctx context.Context) (Counts, error) {
	var c Counts
	if err := p.call(ctx, http.MethodGet, "/__test/counts", nil, http.StatusOK, &c); err != nil {
		return Counts{}, err
	}
	return c, nil
}

// ResetCounts sets every count back to zero.
func (p *IdP) ResetCounts(ctx context.Context) error {
	return p.call(ctx, http.MethodPost, "/__test/counts/reset", nil, http.StatusNoContent, nil)
}

// PendingRequest is a CIBA request waiting for the user.
type PendingRequest struct {
	AuthReqID      string `json:"auth_req_id"`
	ClientID       string `json:"client_id"`
	AccountID      string `json:"account_id"`
	Scope          string `json:"scope"`
	BindingMessage string `json:"binding_message,omitempty"`
	LoginHint      string `json:"login_hint,omitempty"`
	// AuthorizationDetails are the request's authorization_details as the
	// IdP keeps them (RFC 9396), when Config.RARTypes is set.
	AuthorizationDetails json.RawMessage `json:"authorization_details,omitempty"`
	// Resource is the request's resource parameter as received, if any.
	Resource any `json:"resource,omitempty"`
	// ExpiresAt is the expiry in seconds since the epoch.
	ExpiresAt int64 `json:"expires_at"`
}

// Pending lists the CIBA requests neither approved, denied, redeemed nor
// expired, soonest expiry first.
func (p *IdP) Pending(ctx context.Context) ([]PendingRequest, error) {
	var out struct {
		Pending []PendingRequest `json:"pending"`
	}
	if err := p.call(ctx, http.MethodGet, "/__test/ciba/pending", nil, http.StatusOK, &out); err != nil {
		return nil, err
	}
	return out.Pending, nil
}

// ErrNoPending is returned by ApproveCIBA and DenyCIBA when nothing pending
// matches.
var ErrNoPending = errors.New("idp: no matching pending CIBA request")

// Resolution says which CIBA requests ApproveCIBA or DenyCIBA resolved.
type Resolution struct {
	// AuthReqIDs are the resolved requests.
	AuthReqIDs []string `json:"auth_req_ids"`
	// PingErrors are failed ping notifications ("client_id: reason"). The
	// result is stored before the ping, so polling still gets it.
	PingErrors []string `json:"ping_errors"`
}

// ApproveCIBA approves, as the user on the authentication device would, the
// pending CIBA request whose auth_req_id is ref or, when none is, every
// pending request of the account that ref (an account ID or e-mail) names.
// The grant covers the requested scopes; a ping client is notified.
func (p *IdP) ApproveCIBA(ctx context.Context, ref string) (Resolution, error) {
	return p.resolve(ctx, "/__test/ciba/approve", ref)
}

// DenyCIBA is ApproveCIBA with the user's refusal: polls get access_denied.
func (p *IdP) DenyCIBA(ctx context.Context, ref string) (Resolution, error) {
	return p.resolve(ctx, "/__test/ciba/deny", ref)
}

func (p *IdP) resolve(ctx context.Context, path, ref string) (Resolution, error) {
	var r Resolution
	err := p.call(ctx, http.MethodPost, path, map[string]string{"match": ref}, http.StatusOK, &r)
	if err != nil {
		return Resolution{}, err
	}
	return r, nil
}

// call does one request to the /__test/ API.
func (p *IdP) call(ctx context.Context, method, path string, in any, want int, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("idp: %s %s: encode: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, p.issuer+path, body)
	if err != nil {
		return fmt.Errorf("idp: %s %s: %w", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return fmt.Errorf("idp: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("idp: %s %s: read: %w", method, path, err)
	}
	if resp.StatusCode == http.StatusNotFound && strings.HasPrefix(path, "/__test/ciba/") {
		return ErrNoPending
	}
	if resp.StatusCode != want {
		return fmt.Errorf("idp: %s %s: status %d, want %d: %s", method, path, resp.StatusCode, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("idp: %s %s: decode %q: %w", method, path, b, err)
		}
	}
	return nil
}
