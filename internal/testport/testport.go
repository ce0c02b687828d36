// Package testport hands out TCP ports on 127.0.0.1 for processes a test
// starts later (cibaproxy, redis-server, the test IdP), which must be told
// their port before they bind it. It is test support, used by
// test/testutil, test/idp, cmd/cibaproxy's tests and
// internal/store/redis/redistest.
//
// # Why a reservation, and why the starters still retry
//
// A port that was free when Free probed it may be bound by someone else
// before the child process binds it. Two sources of such a someone:
//
//   - Listeners on port 0 (httptest servers, the tests' own receivers) and
//     outgoing connections: the kernel gives them ports from its ephemeral
//     range, so Free draws from below it.
//   - Other test binaries: go test -p 4 runs the binaries of several
//     packages at once, each drawing from the same range, and two could
//     draw the same port in the window between the probe and the child's
//     bind (seen as test/abuse's metrics listener failing with "address
//     already in use" during a full run). Free therefore reserves every
//     port it hands out for as long as its test binary runs: a write lock
//     on byte PORT of one lock file shared by every process
//     (os.TempDir()/cibaproxy-testport.lock, fcntl record locks on Linux
//     and macOS). Another binary's Free skips a locked port, so two test
//     processes can never be handed the same port, whatever the timing.
//     The kernel drops the locks when the binary exits, crash or kill -9
//     included, so nothing is left to clean up and no port leaks; a port
//     stays reserved through a child's Restart on it.
//
// A reservation binds no socket, so it is a rule that only users of Free
// follow: a process that is not a test of this module may still bind a
// port between Free's probe and the child's bind. That is rare (below the
// ephemeral range only explicit binds happen) and cannot be prevented
// without handing the child a bound socket, which redis-server and node
// cannot take; so the starters (testutil.Start, idp.Start, redistest.Start)
// also recognise a child that failed to bind and start it again on fresh
// ports, a bounded number of times. Reservation alone would leave that
// window; retry alone would leave two of our own processes free to race,
// and a retry cannot help an in-process server (cmd/cibaproxy's tests) or
// a Restart, which must come back on the same port.
package testport

import (
	"errors"
	mathrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// LockFile is the name, under os.TempDir(), of the file whose byte PORT a
// test process locks to reserve PORT.
const LockFile = "cibaproxy-testport.lock"

// Free returns a TCP port on 127.0.0.1 that was free a moment ago and is
// reserved for this test binary until it exits, for a process the test
// starts later. It is drawn below the kernel's ephemeral range, where no
// listener on port 0 can be given it between now and the process's bind,
// never twice in one test binary, and never while another test process
// holds it (see the package documentation).
func Free() (int, error) {
	return std.free()
}

// std is the allocator of Free, one per test binary: the ports it handed
// out and the open lock file that holds their reservations.
var std = newAllocator(filepath.Join(os.TempDir(), LockFile), nil)

// allocator hands out ports and reserves them.
type allocator struct {
	path string
	// pick draws a candidate port; a random one below the ephemeral range
	// unless a test sets it.
	pick func() int

	mu    sync.Mutex
	given map[int]bool
	// lock is the open lock file, nil until first use or when it cannot
	// be opened (then ports are not reserved across processes).
	lock     *os.File
	lockOnce bool
}

func newAllocator(path string, pick func() int) *allocator {
	if pick == nil {
		lo, hi := 10000, ephemeralLow()-1
		pick = func() int { return lo + mathrand.IntN(hi-lo+1) }
	}
	return &allocator{path: path, pick: pick, given: make(map[int]bool)}
}

// tries bounds the candidates Free draws before it gives up.
const tries = 200

func (a *allocator) free() (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.lockOnce {
		a.lockOnce = true
		// Without the file (a read-only temporary directory) ports are
		// still probed, only not reserved: the starters' retry remains.
		a.lock, _ = openLock(a.path)
	}
	for range tries {
		p := a.pick()
		if a.given[p] {
			continue
		}
		if a.lock != nil {
			ok, err := reserve(a.lock, p)
			if err != nil {
				return 0, err
			}
			if !ok {
				continue // another test process holds it
			}
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			// Taken by a process that does not reserve (or a child of an
			// earlier binary still running): keep the reservation so that
			// this binary does not probe it again, and draw another.
			a.given[p] = true
			continue
		}
		_ = ln.Close()
		a.given[p] = true
		return p, nil
	}
	return 0, errors.New("testport: no free port below the ephemeral range after 200 tries")
}

// openLock opens (creating) the shared lock file, readable and writable by
// every user so that the test runs of several users on one machine see one
// another's reservations.
func openLock(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		return nil, err
	}
	_ = f.Chmod(0o666) // the umask may have narrowed it; best effort when not ours
	return f, nil
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
