// Package ci tests .ci/run, the CI entry point, against fake tools: its
// prerequisite checks name what is missing or too old and what to install,
// it installs with apt-get only what Debian's candidate can fix, and it runs
// make test once everything is there. fuzz_test.go tests scripts/fuzz.sh's
// choice of the packages make test's fuzz smoke run fuzzes.
//
// Every tool .ci/run looks at (go, gcc, node, npm, redis-server, chromium,
// make, git, apt-get, apt-cache, id) is a small shell script in a temporary
// directory that is the whole PATH, next to links to the few real programs
// the script itself uses (bash, awk, grep, sort, head, dirname).
package ci

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// realTools are the programs .ci/run runs that are not under test.
var realTools = []string{"bash", "awk", "grep", "sort", "head", "dirname"}

// machine is a fake machine: a PATH of fake tools and a log of what
// apt-get and make were asked to do.
type machine struct {
	t   *testing.T
	bin string
	log string
	ca  string
}

// goodTools is a machine on which everything is there and new enough;
// apt offers Debian 12's versions.
func goodTools() map[string]string {
	return map[string]string{
		"go": `case "$1" in
  version) echo "go version go1.26.8 linux/amd64" ;;
  env) echo auto ;;
  mod) ;;
esac`,
		"gcc":          `echo gcc`,
		"node":         `echo v20.20.2`,
		"npm":          `echo 10.8.2`,
		"redis-server": `echo "Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64"`,
		"chromium":     `echo Chromium 131`,
		"make":         `echo "make $*" >>"$LOG"`,
		"git":          `echo git`,
		"id":           `echo 0`,
		"apt-get":      `echo "apt-get $*" >>"$LOG"`,
		"apt-cache": `case "$2" in
  nodejs) echo "  Candidate: 18.19.0+dfsg-6~deb12u2" ;;
  golang-go) echo "  Candidate: 2:1.19~1" ;;
  *) echo "  Candidate: 1.0-1" ;;
esac`,
	}
}

// newMachine returns a machine with goodTools changed by change (a nil
// value removes the tool).
func newMachine(t *testing.T, change map[string]*string) *machine {
	t.Helper()
	dir := t.TempDir()
	m := &machine{t: t, bin: filepath.Join(dir, "bin"), log: filepath.Join(dir, "log"), ca: filepath.Join(dir, "ca.crt")}
	if err := os.Mkdir(m.bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(m.ca, []byte("-----BEGIN CERTIFICATE-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, name := range realTools {
		p, err := exec.LookPath(name)
		if err != nil {
			t.Skipf("%s not on PATH: %v", name, err)
		}
		if err := os.Symlink(p, filepath.Join(m.bin, name)); err != nil {
			t.Fatal(err)
		}
	}
	tools := goodTools()
	for name, body := range change {
		if body == nil {
			delete(tools, name)
		} else {
			tools[name] = *body
		}
	}
	for name, body := range tools {
		m.write(name, body)
	}
	return m
}

// write puts the fake tool name on the machine's PATH.
func (m *machine) write(name, body string) {
	m.t.Helper()
	script := "#!" + filepath.Join(m.bin, "bash") + "\n" + body + "\n"
	if err := os.WriteFile(filepath.Join(m.bin, name), []byte(script), 0o755); err != nil {
		m.t.Fatal(err)
	}
}

// run runs .ci/run with args on the machine and returns its exit code and
// its output.
func (m *machine) run(args ...string) (int, string) {
	m.t.Helper()
	cmd := exec.Command(filepath.Join(testutil.RepoRoot(), ".ci", "run"), args...)
	cmd.Env = []string{"PATH=" + m.bin, "LOG=" + m.log, "SSL_CERT_FILE=" + m.ca, "HOME=" + m.t.TempDir()}
	out, err := cmd.CombinedOutput()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			m.t.Fatalf(".ci/run %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		code = ee.ExitCode()
	}
	return code, string(out)
}

// logged returns what apt-get and make were asked to do.
func (m *machine) logged() string {
	b, err := os.ReadFile(m.log)
	if err != nil && !os.IsNotExist(err) {
		m.t.Fatal(err)
	}
	return string(b)
}

func str(s string) *string { return &s }

// TestCheckOnly: .ci/run --check-only passes on a machine that has
// everything, and on each machine that lacks one thing (or has it too old)
// it exits 1 with one line naming the thing, what was found and what to
// install; it installs nothing and runs nothing.
func TestCheckOnly(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		change map[string]*string
		noCA   bool
		want   string // the line, "" for success
	}{
		{name: "all there", want: ""},
		{
			name:   "Debian 12's node 18",
			change: map[string]*string{"node": str("echo v18.19.0")},
			want:   ".ci/run: node: v18.19.0 is older than 20.19.0 and apt offers nodejs 18.19.0; install Node.js 20.19.0 or newer (with npm) yourself and put it on PATH",
		},
		{
			name:   "node 20 without URL.parse",
			change: map[string]*string{"node": str("echo v20.11.1")},
			want:   ".ci/run: node: v20.11.1 is older than 20.19.0 and apt offers nodejs 18.19.0",
		},
		{
			name:   "no node",
			change: map[string]*string{"node": nil},
			want:   ".ci/run: node: not found and apt offers nodejs 18.19.0",
		},
		{
			name: "node 22 from apt",
			change: map[string]*string{"node": nil, "apt-cache": str(`case "$2" in
  nodejs) echo "  Candidate: 22.12.0+dfsg-1" ;;
esac`)},
			want: ".ci/run: node: not found; install nodejs 20.19.0 or newer",
		},
		{
			name:   "no npm",
			change: map[string]*string{"npm": nil},
			want:   ".ci/run: npm: not found; install npm",
		},
		{
			name: "Debian 12's go 1.19",
			change: map[string]*string{"go": str(`case "$1" in
  version) echo "go version go1.19.8 linux/amd64" ;;
  env) echo "" ;;
esac`)},
			want: ".ci/run: go: go1.19.8 is older than go 1.26.8 (go.mod) and cannot fetch it (GOTOOLCHAIN=unknown); install Go 1.26.8 or newer",
		},
		{
			name: "go 1.22 with GOTOOLCHAIN=local",
			change: map[string]*string{"go": str(`case "$1" in
  version) echo "go version go1.22.2 linux/amd64" ;;
  env) echo local ;;
esac`)},
			want: ".ci/run: go: go1.22.2 is older than go 1.26.8 (go.mod) and cannot fetch it (GOTOOLCHAIN=local); install Go 1.26.8 or newer",
		},
		{
			// Go 1.21 and later fetch the release go.mod names themselves.
			name: "go 1.22 that may switch",
			change: map[string]*string{"go": str(`case "$1" in
  version) echo "go version go1.22.2 linux/amd64" ;;
  env) echo auto ;;
esac`)},
			want: "",
		},
		{
			name:   "no go",
			change: map[string]*string{"go": nil},
			want:   ".ci/run: go: not found; install Go 1.26.8 or newer (go.mod's go line)",
		},
		{
			name:   "no gcc",
			change: map[string]*string{"gcc": nil},
			want:   ".ci/run: gcc: not found; install gcc (the race detector needs cgo)",
		},
		{
			name: "no ca-certificates",
			noCA: true,
			want: "missing; install ca-certificates",
		},
		{
			name:   "Debian 11's redis 6.0",
			change: map[string]*string{"redis-server": str(`echo "Redis server v=6.0.16 sha=00000000:0 malloc=jemalloc-5.2.1 bits=64"`)},
			want:   ".ci/run: redis-server: 6.0.16 is older than 6.2.0; install redis-server 6.2.0 or newer",
		},
		{
			name:   "no chromium",
			change: map[string]*string{"chromium": nil},
			want:   ".ci/run: chromium: not found; install chromium",
		},
		{
			name:   "no make",
			change: map[string]*string{"make": nil},
			want:   ".ci/run: make: not found; install make",
		},
		{
			name:   "no git",
			change: map[string]*string{"git": nil},
			want:   ".ci/run: git: not found; install git",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := newMachine(t, tc.change)
			if tc.noCA {
				m.ca = filepath.Join(t.TempDir(), "absent.crt")
			}
			code, out := m.run("--check-only")
			if tc.want == "" {
				if code != 0 || !strings.Contains(out, "every prerequisite is there") {
					t.Fatalf("exit %d, output:\n%s\nwant exit 0 and \"every prerequisite is there\"", code, out)
				}
			} else {
				if code != 1 {
					t.Errorf("exit %d, want 1; output:\n%s", code, out)
				}
				lines := strings.Split(strings.TrimSpace(out), "\n")
				if len(lines) != 1 || !strings.Contains(lines[0], tc.want) {
					t.Errorf("output:\n%s\nwant one line with %q", out, tc.want)
				}
			}
			if l := m.logged(); l != "" {
				t.Errorf("--check-only installed or ran something: %s", l)
			}
		})
	}
}

// TestRunInstallsWhatAptCanFix: without --check-only, .ci/run installs a
// missing gcc with apt-get, then runs make test; with Debian 12's Node.js 18
// the only nodejs apt offers, it installs nothing for it and stops before
// make test with the line naming what to install.
func TestRunInstallsWhatAptCanFix(t *testing.T) {
	t.Parallel()
	t.Run("gcc from apt", func(t *testing.T) {
		t.Parallel()
		m := newMachine(t, map[string]*string{"gcc": nil})
		chmod, err := exec.LookPath("chmod")
		if err != nil {
			t.Skipf("chmod not on PATH: %v", err)
		}
		// This apt-get "installs" gcc.
		gcc := filepath.Join(m.bin, "gcc")
		m.write("apt-get", fmt.Sprintf(`echo "apt-get $*" >>"$LOG"
if [ "$1" = install ]; then printf '#!%s\necho gcc\n' >%q; %q +x %q; fi`,
			filepath.Join(m.bin, "bash"), gcc, chmod, gcc))
		code, out := m.run()
		if code != 0 {
			t.Fatalf("exit %d, want 0; output:\n%s", code, out)
		}
		want := "apt-get update -qq\napt-get install -y -qq gcc\nmake test\n"
		if got := m.logged(); got != want {
			t.Errorf("apt-get and make were asked:\n%s\nwant:\n%s", got, want)
		}
	})
	t.Run("node 18 only", func(t *testing.T) {
		t.Parallel()
		m := newMachine(t, map[string]*string{"node": str("echo v18.19.0")})
		code, out := m.run()
		if code != 1 || !strings.Contains(out, ".ci/run: node: v18.19.0 is older than 20.19.0 and apt offers nodejs 18.19.0; install Node.js 20.19.0 or newer") {
			t.Errorf("exit %d, output:\n%s\nwant exit 1 and the line naming Node.js 20.19.0", code, out)
		}
		if got, want := m.logged(), "apt-get update -qq\n"; got != want {
			t.Errorf("apt-get and make were asked:\n%s\nwant only:\n%s", got, want)
		}
	})
}
