// Package testport hands out TCP ports on 127.0.0.1 for processes a test
// starts later (cibaproxy, redis-server), which must be told their port
// before they bind it. It is test support, used by test/testutil and
// internal/store/redis/redistest.
package testport

import (
	"errors"
	mathrand "math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// Free returns a TCP port on 127.0.0.1 that was free a moment ago, for a
// process the test starts later. It is drawn below the kernel's ephemeral
// range, where no listener on port 0 (httptest servers, the tests' own
// receivers) can be given it between now and the process's bind, and never
// twice in one test binary: a port taken from the ephemeral range could be
// handed to such a listener in that window, and the process would then fail
// to bind or, worse, the test would talk to the wrong server.
func Free() (int, error) {
	lo, hi := 10000, ephemeralLow()-1
	ports.mu.Lock()
	defer ports.mu.Unlock()
	if ports.given == nil {
		ports.given = make(map[int]bool)
	}
	for range 200 {
		p := lo + mathrand.IntN(hi-lo+1)
		if ports.given[p] {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue // taken (another test binary's process, say)
		}
		_ = ln.Close()
		ports.given[p] = true
		return p, nil
	}
	return 0, errors.New("testport: no free port below the ephemeral range after 200 tries")
}

// ports remembers the ports Free handed out in this test binary.
var ports struct {
	mu    sync.Mutex
	given map[int]bool
}

// ephemeralLow is the first port of the kernel's ephemeral range (Linux:
// /proc/sys/net/ipv4/ip_local_port_range), 32768 when it cannot be read.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 12000 {
				return n
			}
		}
	}
	return 32768
}
