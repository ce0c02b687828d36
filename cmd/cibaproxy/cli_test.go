package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// runCLI runs the command line args in-process and returns its exit code,
// standard output and standard error.
func runCLI(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(stdin), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// helpNames is every command, subcommand and group of subcommands, the
// nested groups too ("users", "users webpush", "users webpush list").
func helpNames() []string {
	var names []string
	for _, c := range commands {
		words := strings.Fields(c.name)
		for n := 1; n < len(words); n++ {
			if group := strings.Join(words[:n], " "); !slices.Contains(names, group) {
				names = append(names, group)
			}
		}
		names = append(names, c.name)
	}
	return names
}

var flagRE = regexp.MustCompile(`(?m)^  (--[a-z-]+)`)

// TestHelpOfEveryCommand walks every command and subcommand: --help, -h
// and `help COMMAND` print its usage line with its arguments on stdout
// and exit 0; every flag its help lists is in its usage line and the other
// way round (no flag a command does not use, like --full on cancel).
func TestHelpOfEveryCommand(t *testing.T) {
	for _, name := range helpNames() {
		words := strings.Fields(name)
		for _, args := range [][]string{
			append(slices.Clone(words), "--help"),
			append(slices.Clone(words), "-h"),
			append([]string{"help"}, words...),
		} {
			code, stdout, stderr := runCLI(t, "", args...)
			if code != 0 || stderr != "" {
				t.Errorf("cibaproxy %s: exit %d, stderr %q; want 0 and nothing", strings.Join(args, " "), code, stderr)
				continue
			}
			want := "usage: cibaproxy " + name
			if name == "help" {
				want = "usage: cibaproxy COMMAND" // help's help is the usage
			}
			if !strings.HasPrefix(stdout, want) {
				t.Errorf("cibaproxy %s: the help does not start with its usage line:\n%s", strings.Join(args, " "), stdout)
			}
		}
		if !slices.ContainsFunc(commands, func(c command) bool { return c.name == name }) || name == "help" {
			continue // a group: its subcommands are checked
		}
		code, stdout, _ := runCLI(t, "", append(words, "--help")...)
		if code != 0 {
			continue
		}
		line, _, _ := strings.Cut(stdout, "\n")
		var listed []string
		for _, m := range flagRE.FindAllStringSubmatch(stdout, -1) {
			listed = append(listed, m[1])
			if !strings.Contains(line+" ", m[1]+" ") && !strings.Contains(line, m[1]+"]") {
				t.Errorf("%s: flag %s is in the help but not in the usage line %q", name, m[1], line)
			}
		}
		for _, f := range regexp.MustCompile(`--[a-z-]+`).FindAllString(line, -1) {
			if !slices.Contains(listed, f) {
				t.Errorf("%s: the usage line %q names %s, which the command does not take", name, line, f)
			}
		}
	}
	for _, want := range []string{
		"usage: cibaproxy requests show ID --config FILE",
		"usage: cibaproxy requests cancel ID --config FILE [--json]\n",
	} {
		name := strings.Join(strings.Fields(want)[2:4], " ")
		if _, stdout, _ := runCLI(t, "", append(strings.Fields(name), "--help")...); !strings.HasPrefix(stdout, want) {
			t.Errorf("%s --help:\n%s\nwant it to start with %q", name, stdout, want)
		}
	}
}

// TestUsageListsEveryCommand: the top-level usage (cibaproxy, cibaproxy
// --help) names every command with its arguments; without a command it
// goes to stderr with exit 2.
func TestUsageListsEveryCommand(t *testing.T) {
	code, stdout, _ := runCLI(t, "", "--help")
	if code != 0 {
		t.Fatalf("--help: exit %d", code)
	}
	for _, c := range commands {
		if want := strings.TrimSpace(c.name + " " + c.args); !strings.Contains(stdout, "  "+want+"\n") {
			t.Errorf("the usage lacks %q:\n%s", want, stdout)
		}
	}
	if code, stdout, stderr := runCLI(t, ""); code != 2 || stdout != "" || !strings.Contains(stderr, "usage: cibaproxy") {
		t.Errorf("no command: exit %d, stdout %q, stderr %q; want 2 and the usage on stderr", code, stdout, stderr)
	}
}

// TestWrongCommandLines: a wrong command line exits 2 and says what is
// wrong, then the usage line of the command it was for.
func TestWrongCommandLines(t *testing.T) {
	for _, tc := range []struct {
		args       []string
		say, usage string
	}{
		{[]string{"serve"}, "--config FILE is required", "usage: cibaproxy serve --config FILE"},
		{[]string{"serve", "--frob"}, "unknown flag --frob", "usage: cibaproxy serve "},
		{[]string{"requests"}, "want list, show, cancel", "usage: cibaproxy requests list"},
		{[]string{"requests", "frobnicate"}, `unknown subcommand "frobnicate"`, "       cibaproxy requests cancel ID"},
		{[]string{"requests", "show", "--config", "x.yaml"}, "want one ID", "usage: cibaproxy requests show ID"},
		{[]string{"requests", "cancel", "abcdefgh", "--full", "--config", "x.yaml"}, "unknown flag --full", "usage: cibaproxy requests cancel ID"},
		{[]string{"requests", "list", "--config", "x.yaml", "--state", "waiting"}, "waiting", "usage: cibaproxy requests list"},
		{[]string{"clients", "list", "extra"}, `unexpected argument "extra"`, "usage: cibaproxy clients list"},
		{[]string{"keys"}, "want rotate", "usage: cibaproxy keys rotate"},
		{[]string{"hash-secret", "s3cret"}, `unexpected argument "s3cret"`, "usage: cibaproxy hash-secret"},
		{[]string{"version", "x"}, `unexpected argument "x"`, "usage: cibaproxy version"},
		{[]string{"demo-device", "--auto", "maybe"}, `--auto must be "approve" or "deny"`, "usage: cibaproxy demo-device"},
	} {
		code, stdout, stderr := runCLI(t, "", tc.args...)
		if code != 2 || stdout != "" || !strings.Contains(stderr, tc.say) || !strings.Contains(stderr, tc.usage) {
			t.Errorf("cibaproxy %s: exit %d, stdout %q, stderr:\n%s\nwant exit 2 saying %q and %q", strings.Join(tc.args, " "), code, stdout, stderr, tc.say, tc.usage)
		}
	}
}

// TestCheckConfigOutput: a good file is summed up with the right plural,
// its warnings one line each on standard error; a bad one is listed one problem per line, each as FILE:LINE: PATH:
// MESSAGE, then one line with the command's prefix and the count.
func TestCheckConfigOutput(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	const base = "issuer: https://ciba.example.com\nupstream:\n  local:\n    users:\n" +
		"      - username: alice\n        password_hash: \"$2a$10$spJ.y58rlNOoHwC/fKk3.OoacF3R0k9OFHXbH8WIIXHS/cr20EHNu\"\n"
	if err := os.WriteFile(good, []byte(base+"clients:\n  - client_id: c1\n    client_secret: s1\n    backchannel_token_delivery_mode: poll\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, stdout, stderr := runCLI(t, "", "check-config", "--config", good); code != 0 || !strings.Contains(stdout, ", 1 client, ") {
		t.Errorf("one client: exit %d, stdout %q, stderr %q; want 0 and \"1 client\"", code, stdout, stderr)
	}
	// The good file has no channel: a warning line on standard error,
	// naming every channel one can set, and still exit 0.
	if _, _, stderr := runCLI(t, "", "check-config", "--config", good); !strings.HasPrefix(stderr, good+": warning: no channel configured (channels.webpush, channels.email or channels.webhook.url)") ||
		strings.Count(stderr, "\n") != 1 {
		t.Errorf("no channel: stderr %q, want one warning line naming channels.webpush, channels.email and channels.webhook.url", stderr)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("issuer: ${CIBAPROXY_TEST_UNSET_ISSUER}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCLI(t, "", "check-config", "--config", bad)
	lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	if code != 1 || stdout != "" || len(lines) < 3 {
		t.Fatalf("exit %d, stdout %q, stderr:\n%s\nwant exit 1 and several problems", code, stdout, stderr)
	}
	for _, l := range lines[:len(lines)-1] {
		if !strings.HasPrefix(l, bad+":") {
			t.Errorf("problem line %q does not start with the file name", l)
		}
	}
	if want := fmt.Sprintf("cibaproxy check-config: %d problems in the configuration", len(lines)-1); lines[len(lines)-1] != want {
		t.Errorf("last line %q, want %q", lines[len(lines)-1], want)
	}
	if !strings.Contains(lines[0], "issuer: required (from ${CIBAPROXY_TEST_UNSET_ISSUER}, which is not set)") {
		t.Errorf("first problem %q does not name the unset variable", lines[0])
	}
}

// TestPackageDocListsEveryCommand: the package comment in main.go repeats
// the command table by hand; it must say what commands says, no more.
func TestPackageDocListsEveryCommand(t *testing.T) {
	src, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	var doc []string
	for _, l := range strings.Split(string(src), "\n") {
		if u, ok := strings.CutPrefix(l, "//\tcibaproxy "); ok {
			doc = append(doc, u)
		}
	}
	var want []string
	for _, c := range commands {
		want = append(want, strings.TrimSpace(c.name+" "+c.args))
	}
	if !slices.Equal(doc, want) {
		t.Errorf("main.go's package comment lists\n%s\nwant (cli.go's commands)\n%s", strings.Join(doc, "\n"), strings.Join(want, "\n"))
	}
}

// TestHashSecretPipedBadInput: a CRLF line ending is not part of the
// secret, and a secret longer than bcrypt's 72 bytes is refused rather
// than silently cut.
func TestHashSecretPipedBadInput(t *testing.T) {
	code, stdout, stderr := runCLI(t, "crlf-secret\r\nsecond line\n", "hash-secret")
	if code != 0 || stderr != "" {
		t.Fatalf("CRLF: exit %d, stderr %q", code, stderr)
	}
	if err := bcrypt.CompareHashAndPassword([]byte(strings.TrimSpace(stdout)), []byte("crlf-secret")); err != nil {
		t.Errorf("CRLF: printed %q: %v", stdout, err)
	}
	code, stdout, stderr = runCLI(t, strings.Repeat("x", 73)+"\n", "hash-secret")
	if code != 1 || stdout != "" || !strings.Contains(stderr, "72 bytes") {
		t.Errorf("73 bytes: exit %d, stdout %q, stderr %q; want 1 saying bcrypt uses at most 72 bytes", code, stdout, stderr)
	}
}

// TestConfigRequired: every command whose usage names --config FILE
// refuses to run without it (exit 2, before touching any store).
func TestConfigRequired(t *testing.T) {
	for _, c := range commands {
		if !strings.Contains(c.args, "--config FILE") {
			continue
		}
		args := strings.Fields(c.name)
		if strings.HasPrefix(c.args, "ID ") {
			args = append(args, "abcdefghijkl")
		}
		code, stdout, stderr := runCLI(t, "", args...)
		if code != 2 || stdout != "" || !strings.Contains(stderr, "--config FILE is required") {
			t.Errorf("cibaproxy %s without --config: exit %d, stdout %q, stderr %q; want 2 saying --config FILE is required", c.name, code, stdout, stderr)
		}
	}
}
