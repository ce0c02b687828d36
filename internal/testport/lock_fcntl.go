//go:build linux || darwin

package testport

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
)

// reserve takes a write lock on byte port of f without waiting. It answers
// false when another process holds it. The lock is a POSIX record lock:
// it belongs to this process and ends when the process exits (or closes
// any descriptor of the file, which this package never does).
func reserve(f *os.File, port int) (bool, error) {
	lk := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: io.SeekStart, Start: int64(port), Len: 1}
	err := syscall.FcntlFlock(f.Fd(), syscall.F_SETLK, &lk)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, syscall.EAGAIN), errors.Is(err, syscall.EACCES):
		return false, nil
	default:
		return false, fmt.Errorf("testport: lock port %d in %s: %w", port, f.Name(), err)
	}
}
