//go:build linux

package idp

import (
	"os/exec"
	"syscall"
)

// dieWithParent kills node when the test process dies, so an aborted test
// run (a panic, a timeout) leaves no IdP behind.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
