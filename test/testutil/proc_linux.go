//go:build linux

package testutil

import (
	"os/exec"
	"syscall"
)

// dieWithParent kills the server when the test process dies, so an aborted
// test run (a panic, a timeout) leaves no cibaproxy behind.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
