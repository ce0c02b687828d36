package archtest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestFuzzBuildsNeedNoRedis fails when the test binary of a package with
// fuzz targets, built as scripts/fuzz.sh builds it (-tags fuzzing), depends
// on go-redis: the fuzzing instrumentation compiles a package's whole graph
// again, and go-redis alone was about 60 CPU seconds of it
// (test/README.md, "Time"). A test that needs Redis goes in a file with
// the constraint !fuzzing or in a package of its own
// (internal/ciba/oncetest).
func TestFuzzBuildsNeedNoRedis(t *testing.T) {
	out, err := exec.CommandContext(t.Context(), "go", "list", "-f", "{{.ImportPath}} {{.Dir}}", module+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	fuzzed := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, dir, _ := strings.Cut(line, " ")
		if !hasFuzzTarget(t, dir) {
			continue
		}
		fuzzed++
		if slices.Contains(listDeps(t, pkg, "-tags", "fuzzing"), "github.com/redis/go-redis/v9") {
			t.Errorf("%s: its fuzzing build (-tags fuzzing) depends on go-redis", pkg)
		}
	}
	if fuzzed == 0 {
		t.Fatal("no package with a fuzz target found")
	}
}

// hasFuzzTarget reports whether a _test.go file of dir declares a Fuzz
// function, as scripts/fuzz.sh finds them.
func hasFuzzTarget(t *testing.T, dir string) bool {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*_test.go"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.HasPrefix(b, []byte("func Fuzz")) || bytes.Contains(b, []byte("\nfunc Fuzz")) {
			return true
		}
	}
	return false
}
