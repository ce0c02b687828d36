//go:build !linux

package idp

import "os/exec"

// dieWithParent does nothing where the kernel offers no parent-death signal;
// t.Cleanup still stops node when the test ends normally.
func dieWithParent(*exec.Cmd) {}
