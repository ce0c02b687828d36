package ci

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// TestRaceFlagsMatchMakefile: the server test/testutil builds when the
// tests run with -race outside make test has the flags make test's own
// (RACEFLAGS in the Makefile), so the two share a build cache and time
// bcrypt alike.
func TestRaceFlagsMatchMakefile(t *testing.T) {
	mk, err := os.ReadFile(filepath.Join(testutil.RepoRoot(), "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	var flags []string
	for line := range strings.Lines(string(mk)) {
		if v, ok := strings.CutPrefix(line, "RACEFLAGS :="); ok {
			flags = strings.Fields(v)
		}
	}
	if flags == nil {
		t.Fatal("the Makefile has no RACEFLAGS := line")
	}
	if got, want := strings.Join(testutil.RaceBuildFlags, " "), strings.Join(flags, " "); got != want {
		t.Errorf("testutil.RaceBuildFlags = %q, the Makefile's RACEFLAGS = %q: keep them the same", got, want)
	}
}
