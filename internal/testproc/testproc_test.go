package testproc

import (
	"os/exec"
	"strings"
	"testing"
	"time"
)

// start runs script in a shell, waits until it printed "ready", and
// returns it with the channel closed when its Wait returned.
func start(t *testing.T, script string) (*exec.Cmd, <-chan struct{}) {
	t.Helper()
	cmd := exec.Command("sh", "-c", script)
	logs := &Logs{}
	cmd.Stdout = logs
	if err := cmd.Start(); err != nil {
		t.Skipf("no sh: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "ready") {
		if time.Now().After(deadline) {
			t.Fatal("the shell did not start")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return cmd, done
}

func TestEnd(t *testing.T) {
	cmd, done := start(t, "echo ready; exec sleep 30")
	if killed := End(cmd, done, true, 10*time.Second); killed {
		t.Error("a process that obeys SIGTERM was killed")
	}
	cmd, done = start(t, "trap '' TERM; echo ready; while :; do sleep 0.05; done")
	if killed := End(cmd, done, true, 200*time.Millisecond); !killed {
		t.Error("a process that ignores SIGTERM was not killed")
	}
	cmd, done = start(t, "echo ready; exec sleep 30")
	if killed := End(cmd, done, false, time.Hour); killed {
		t.Error("End without grace reported a graceful end killed")
	}
}

func TestLogs(t *testing.T) {
	var l Logs
	_, _ = l.Write([]byte("a\n"))
	Stopped(&l, "idp", true, nil)
	if got := l.String(); !strings.Contains(got, "a\n----- idp stopped (SIGTERM): <nil>\n") {
		t.Fatalf("logs %q", got)
	}
}
