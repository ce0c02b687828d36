// Package testutil runs the real cibaproxy binary for the end-to-end and
// interop tests under test/: it builds the binary, starts it on a free
// loopback port with its environment, waits for /healthz, stops or kills it,
// and provides the HTTP receivers (webhook channel, client notification
// endpoint) and the small HTTP helpers the tests share.
package testutil

import (
	"bytes"
	"context"
	"fmt"
	"github.com/cibaproxy/cibaproxy/internal/testport"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"time"
)

// EnvBinary names an already built cibaproxy binary to test instead of
// building one (handy when iterating on tests).
const EnvBinary = "CIBAPROXY_TEST_BIN"

// RepoRoot is the module root (the directory holding go.mod).
func RepoRoot() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		panic("testutil: no caller information")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// QuickstartConfig is the path of examples/quickstart.yaml.
func QuickstartConfig() string {
	return filepath.Join(RepoRoot(), "examples", "quickstart.yaml")
}

// RaceBuildFlags are the go build flags of a race-enabled server, make
// test's RACEFLAGS (test/ci TestRaceFlagsMatchMakefile keeps the two the
// same): everything instrumented but bcrypt's cipher, which shares no
// memory between goroutines and, instrumented, made every bcrypt check 16
// times slower.
var RaceBuildFlags = []string{"-race", "-gcflags=golang.org/x/crypto/blowfish=-race=false"}

// BuildBinary builds ./cmd/cibaproxy into dir and returns its path. When the
// tests run with the race detector the server is built with it too, so a data
// race in the server shows up in its stderr (and Server.Stop fails the test).
// $CIBAPROXY_TEST_BIN, when set, is used as is.
func BuildBinary(dir string) (string, error) {
	if bin := os.Getenv(EnvBinary); bin != "" {
		return bin, nil
	}
	out := filepath.Join(dir, "cibaproxy")
	if runtime.GOOS == "windows" {
		out += ".exe"
	}
	args := []string{"build", "-o", out}
	if RaceEnabled {
		args = append(args, RaceBuildFlags...)
	}
	args = append(args, "./cmd/cibaproxy")
	// A bound on a hung build, not a speed check: a cold race build on a
	// busy 2-core machine has taken more than 5 minutes.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = RepoRoot()
	var stderr bytes.Buffer
	cmd.Stdout = &stderr
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go %v: %w\n%s", args, err, stderr.Bytes())
	}
	return out, nil
}

// MustBuild is BuildBinary for TestMain: it builds into a new temporary
// directory and returns the binary and a cleanup function. It exits the
// process when the build fails.
func MustBuild() (bin string, cleanup func()) {
	dir, err := os.MkdirTemp("", "cibaproxy-test-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "testutil:", err)
		os.Exit(1)
	}
	bin, err = BuildBinary(dir)
	if err != nil {
		_ = os.RemoveAll(dir)
		fmt.Fprintln(os.Stderr, "testutil: building cibaproxy failed:", err)
		os.Exit(1)
	}
	return bin, func() { _ = os.RemoveAll(dir) }
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago, for a
// process the test starts later (testport.Free: below the ephemeral range,
// never twice in one test binary, reserved against the other test binaries
// until this one exits).
func FreePort() (int, error) { return testport.Free() }

// FreeAddr is FreePort as "127.0.0.1:PORT".
func FreeAddr() (string, error) {
	p, err := FreePort()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p)), nil
}
