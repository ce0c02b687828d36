// Package testproc holds what the tests' helper processes share (cibaproxy
// run by test/testutil, node-oidc-provider by test/idp): a buffer for their
// output that the test reads while they write, and their end. It is for
// tests only.
package testproc

import (
	"bytes"
	"fmt"
	"io"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Logs is a bytes.Buffer safe for a process's writers and the test's
// readers. The zero Logs is empty and ready for use.
type Logs struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (l *Logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *Logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// End ends the process of cmd, whose Wait has returned once done is
// closed: gracefully with SIGTERM, and SIGKILL if it has not exited within
// timeout; otherwise with SIGKILL at once. It returns once the process has
// exited, reporting whether a graceful end had to kill it.
func End(cmd *exec.Cmd, done <-chan struct{}, graceful bool, timeout time.Duration) (killed bool) {
	if graceful {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		timer := time.NewTimer(timeout)
		defer timer.Stop()
		select {
		case <-done:
			return false
		case <-timer.C:
			killed = true
		}
	}
	_ = cmd.Process.Kill()
	<-done
	return killed
}

// Stopped writes to w the line that marks where the output of name ends:
// how it was stopped (SIGTERM when graceful, SIGKILL) and its exit error.
func Stopped(w io.Writer, name string, graceful bool, err error) {
	how := "SIGKILL"
	if graceful {
		how = "SIGTERM"
	}
	fmt.Fprintf(w, "----- %s stopped (%s): %v\n", name, how, err)
}
