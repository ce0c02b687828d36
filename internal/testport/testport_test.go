package testport

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestFreeIsBelowTheEphemeralRangeAndNeverRepeats: the ports handed out
// can be bound, lie below the range the kernel gives to listeners on port
// 0, and are all different.
func TestFreeIsBelowTheEphemeralRangeAndNeverRepeats(t *testing.T) {
	low := ephemeralLow()
	seen := map[int]bool{}
	for range 50 {
		p, err := Free()
		if err != nil {
			t.Fatal(err)
		}
		if p >= low || p < 10000 {
			t.Fatalf("port %d is outside [10000, %d)", p, low)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("port %d cannot be bound: %v", p, err)
		}
		_ = ln.Close()
	}
}

// sequence returns a pick function that draws ports in order, then 0.
func sequence(ports ...int) func() int {
	return func() int {
		if len(ports) == 0 {
			return 0
		}
		p := ports[0]
		ports = ports[1:]
		return p
	}
}

// envHold makes the test binary, run as a child by
// TestAnotherProcessReservationIsSkipped, reserve the port PATH:PORT names,
// print "held", and hold it until its stdin closes.
const envHold = "TESTPORT_TEST_HOLD"

// TestHoldHelper is the child of TestAnotherProcessReservationIsSkipped;
// it does nothing in a normal run.
func TestHoldHelper(t *testing.T) {
	spec := os.Getenv(envHold)
	if spec == "" {
		t.Skip("run as a child of TestAnotherProcessReservationIsSkipped only")
	}
	path, ps := filepath.Split(spec)
	port, err := strconv.Atoi(ps)
	if err != nil {
		t.Fatal(err)
	}
	a := newAllocator(filepath.Join(path, LockFile), sequence(port))
	if got, err := a.free(); err != nil || got != port {
		t.Fatalf("child: free = %d, %v; want %d", got, err, port)
	}
	os.Stdout.WriteString("held\n")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n') // until the parent closes stdin
}

// TestAnotherProcessReservationIsSkipped: a port another test process
// reserved is not handed out, although nothing listens on it, so that two
// test binaries running side by side (go test -p 4) can never give their
// children the same port; the reservation ends when that process exits.
func TestAnotherProcessReservationIsSkipped(t *testing.T) {
	dir := t.TempDir()
	p1, err := Free()
	if err != nil {
		t.Fatal(err)
	}
	p2, err := Free()
	if err != nil {
		t.Fatal(err)
	}

	child := exec.Command(os.Args[0], "-test.run=^TestHoldHelper$", "-test.count=1")
	child.Env = append(os.Environ(), envHold+"="+filepath.Join(dir, strconv.Itoa(p1)))
	stdin, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1) // the child's exit status, once
	done := make(chan struct{})   // closed when the child has exited
	t.Cleanup(func() {
		_ = stdin.Close()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = child.Process.Kill()
		}
	})
	held := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		ok := false
		for sc.Scan() {
			if sc.Text() == "held" && !ok {
				ok = true
				held <- true
			}
		}
		if !ok {
			held <- false
		}
		exited <- child.Wait()
		close(done)
	}()
	select {
	case ok := <-held:
		if !ok {
			t.Fatal("the child exited without reserving its port")
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the child did not reserve its port within 60 s")
	}

	// The child's port is free to bind, but reserved: it is skipped.
	a := newAllocator(filepath.Join(dir, LockFile), sequence(p1, p2))
	got, err := a.free()
	if err != nil {
		t.Fatal(err)
	}
	if got != p2 {
		t.Fatalf("free = %d, want %d: port %d is reserved by another process", got, p2, p1)
	}

	// Once the child exits its reservation is gone.
	_ = stdin.Close()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("child: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the child did not exit")
	}
	b := newAllocator(filepath.Join(dir, LockFile), sequence(p1))
	if got, err := b.free(); err != nil || got != p1 {
		t.Fatalf("after the child exited: free = %d, %v; want %d", got, err, p1)
	}
}

// TestBoundPortIsSkipped: a port some other program listens on (which
// reserves nothing) is not handed out.
func TestBoundPortIsSkipped(t *testing.T) {
	p1, err := Free()
	if err != nil {
		t.Fatal(err)
	}
	p2, err := Free()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p1)))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a := newAllocator(filepath.Join(t.TempDir(), LockFile), sequence(p1, p2))
	if got, err := a.free(); err != nil || got != p2 {
		t.Fatalf("free = %d, %v; want %d (%d is bound)", got, err, p2, p1)
	}
}
