package ci

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fuzzRepo is a git repository holding a module of three fuzzed packages
// (a, b and c, c's corpus under testdata/) and a copy of scripts/fuzz.sh,
// committed on main and then on a branch that changes what change does.
// PATH's go is a wrapper that answers go test -c with a fake test binary
// (it prints the target it was asked to fuzz) and hands every other
// command to the real go.
type fuzzRepo struct {
	dir, path string
}

func newFuzzRepo(t *testing.T, change func(dir string)) *fuzzRepo {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go on PATH")
	}
	gitBin, err := exec.LookPath("git")
	if err != nil {
		t.Skip("no git on PATH")
	}
	script, err := os.ReadFile(filepath.Join("..", "..", "scripts", "fuzz.sh"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files := map[string]string{
		"go.mod":             "module example.test/fz\n\ngo 1.22\n",
		"scripts/fuzz.sh":    string(script),
		"a/a.go":             "package a\n",
		"a/notes.txt":        "what a parses\n",
		"a/a_test.go":        "package a\n\nimport \"testing\"\n\nfunc FuzzA(f *testing.F) { f.Fuzz(func(*testing.T, []byte) {}) }\n",
		"b/b.go":             "package b\n",
		"b/b_test.go":        "package b\n\nimport \"testing\"\n\nfunc FuzzB(f *testing.F) { f.Fuzz(func(*testing.T, []byte) {}) }\n",
		"c/c.go":             "package c\n",
		"c/c_test.go":        "package c\n\nimport \"testing\"\n\nfunc FuzzC(f *testing.F) { f.Fuzz(func(*testing.T, []byte) {}) }\n",
		"c/testdata/fuzz/.k": "",
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := t.TempDir()
	wrapper := `#!/bin/bash
if [ "$1" = test ]; then
  a=("$@")
  for i in "${!a[@]}"; do [ "${a[$i]}" = -o ] && out=${a[$((i+1))]}; done
  pkg=${a[$((${#a[@]}-1))]}
  printf '#!/bin/sh\necho "fuzzed %s $4"\n' "$pkg" >"$out"
  chmod +x "$out"
  exit 0
fi
exec ` + goBin + ` "$@"
`
	if err := os.WriteFile(filepath.Join(bin, "go"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	r := &fuzzRepo{dir: dir, path: bin + string(os.PathListSeparator) + filepath.Dir(gitBin) + string(os.PathListSeparator) + os.Getenv("PATH")}
	r.git(t, "init", "-q", "-b", "main")
	r.git(t, "add", "-A")
	r.git(t, "commit", "-q", "-m", "main")
	r.git(t, "checkout", "-q", "-b", "work")
	change(dir)
	r.git(t, "add", "-A")
	r.git(t, "commit", "-q", "-m", "work")
	return r
}

func (r *fuzzRepo) git(t *testing.T, args ...string) {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = r.dir
	cmd.Env = append(os.Environ(), "PATH="+r.path, "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.test",
		"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.test")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
}

// fuzzed runs scripts/fuzz.sh with args and returns the packages whose
// targets it fuzzed.
func (r *fuzzRepo) fuzzed(t *testing.T, args ...string) []string {
	t.Helper()
	cmd := exec.Command(filepath.Join(r.dir, "scripts", "fuzz.sh"), args...)
	cmd.Dir = r.dir
	cmd.Env = append(os.Environ(), "PATH="+r.path, "FUZZTIME=1s")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("fuzz.sh %v: %v\n%s", args, err, out)
	}
	var pkgs []string
	for _, line := range strings.Split(string(out), "\n") {
		if p, ok := strings.CutPrefix(line, "fuzzed example.test/fz/"); ok {
			pkgs = append(pkgs, strings.Fields(p)[0])
		}
	}
	return pkgs
}

// TestFuzzSmokeOnlyChangedPackages: make test's fuzz smoke run
// (scripts/fuzz.sh --changed-since main) fuzzes the targets of the
// packages a branch changed (a file moved away, a corpus file added, an
// uncommitted edit), and make fuzz (no argument) and a base that names no
// commit fuzz every target.
func TestFuzzSmokeOnlyChangedPackages(t *testing.T) {
	r := newFuzzRepo(t, func(dir string) {
		// a: a file moved out of the package; c: a corpus file added.
		if err := os.Rename(filepath.Join(dir, "a", "notes.txt"), filepath.Join(dir, "notes.txt")); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "c", "testdata", "fuzz", "seed"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	if got := strings.Join(r.fuzzed(t, "--changed-since", "main"), " "); got != "a c" {
		t.Errorf("--changed-since main fuzzed %q, want the changed a and c", got)
	}
	if got := strings.Join(r.fuzzed(t), " "); got != "a b c" {
		t.Errorf("no argument fuzzed %q, want every package", got)
	}
	if got := strings.Join(r.fuzzed(t, "--changed-since", "no-such-branch"), " "); got != "a b c" {
		t.Errorf("a base that names no commit fuzzed %q, want every package", got)
	}
	r.git(t, "checkout", "-q", "main")
	if got := r.fuzzed(t, "--changed-since", "main"); len(got) != 0 {
		t.Errorf("on a clean main fuzzed %q, want none", got)
	}
	// An uncommitted edit counts.
	if err := os.WriteFile(filepath.Join(r.dir, "b", "b.go"), []byte("package b\n\n// B is new.\nconst B = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(r.fuzzed(t, "--changed-since", "main"), " "); got != "b" {
		t.Errorf("with b edited on main fuzzed %q, want b", got)
	}
}
