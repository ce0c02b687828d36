//go:build linux

package e2e

import (
	"bytes"
	"context"
	"net/url"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// quickstartOutput is the output of the quick start script, written by
// its two processes while the test reads it.
type quickstartOutput struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (o *quickstartOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.Write(p)
}

func (o *quickstartOutput) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}

// TestQuickstartScriptPorts: `make run PORT=… DEMO_PORT=…` runs
// scripts/quickstart.sh with those ports: cibaproxy answers on PORT with
// the issuer of that port, its webhook reaches the demo device on
// DEMO_PORT, the script says how often alice can be asked, and Ctrl-C
// stops both.
func TestQuickstartScriptPorts(t *testing.T) {
	t.Parallel()
	port, err := testutil.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	demoPort, err := testutil.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	metricsPort, err := testutil.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(testutil.RepoRoot(), "scripts", "quickstart.sh"), binary)
	cmd.Env = append(cmd.Environ(), "PORT="+strconv.Itoa(port), "DEMO_PORT="+strconv.Itoa(demoPort), "METRICS_PORT="+strconv.Itoa(metricsPort), "CIBAPROXY_DATA="+t.TempDir())
	for _, v := range []string{"CIBAPROXY_LISTEN", "CIBAPROXY_METRICS_LISTEN", "CIBAPROXY_ISSUER", "CIBAPROXY_WEBHOOK_URL", "CIBAPROXY_DEMO_NOTIFY_URL", "CIBAPROXY_REQUESTS_PER_USER"} {
		cmd.Env = append(cmd.Env, v+"=")
	}
	// Its own process group, as in a terminal, where Ctrl-C reaches every
	// process of the group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out := new(quickstartOutput)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	defer func() {
		if !stopped {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	}()
	waitOut := func(what string) {
		t.Helper()
		deadline := time.Now().Add(waitTimeout)
		for !strings.Contains(out.String(), what) {
			if time.Now().After(deadline) {
				t.Fatalf("the quick start never printed %q:\n%s", what, out)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	waitOut(`msg="cibaproxy listening" addr=127.0.0.1:` + strconv.Itoa(port))
	waitOut("demo device listening on http://127.0.0.1:" + strconv.Itoa(demoPort))
	waitOut("alice can be asked 10 times per 10 minutes (CIBAPROXY_REQUESTS_PER_USER")
	waitOut(`msg="metrics, healthz and readyz listening" addr=127.0.0.1:` + strconv.Itoa(metricsPort))

	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	disc, err := testutil.Get(ctx, base+"/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	if got := disc.Str("issuer"); got != base {
		t.Errorf("issuer %q, want %q", got, base)
	}
	res, err := testutil.PostForm(ctx, base+"/bc-authorize", testutil.Client{ID: "demo-poll", Secret: "demo-poll-secret"},
		url.Values{"scope": {"openid"}, "login_hint": {"alice"}, "binding_message": {"Code 1234"}})
	if err != nil || res.Status != 200 {
		t.Fatalf("bc-authorize: %v %v", res, err)
	}
	waitOut(`[device] Demo poll client asks alice to approve (scope "openid", binding message "Code 1234"`)
	waitOut("curl -s -X POST " + base + "/ciba/callback")

	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		stopped = true
	case <-time.After(waitTimeout):
		t.Fatalf("Ctrl-C did not stop the quick start:\n%s", out)
	}
	if !strings.Contains(out.String(), "msg=stopped") {
		t.Errorf("cibaproxy did not shut down in order:\n%s", out)
	}
}
