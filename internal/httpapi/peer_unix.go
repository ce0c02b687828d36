//go:build linux || darwin || freebsd

package httpapi

import (
	"crypto/tls"
	"errors"
	"net"
	"syscall"
)

// peerClosed reports whether the client closed (or reset) connection c,
// with a non-blocking peek at its socket: no byte is consumed, and bytes
// the client sent (its next request) count as open. It costs one system
// call and no goroutine, which is why a parked poll's client is checked
// only when its poll is answered.
func peerClosed(c net.Conn) bool {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	closed := false
	err = raw.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case errors.Is(err, syscall.EAGAIN), errors.Is(err, syscall.EINTR):
		case err != nil, n == 0:
			closed = true
		}
		return true // never wait
	})
	return err != nil || closed
}
