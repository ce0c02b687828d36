package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/cibaproxy/cibaproxy/internal/config"
)

// command documents one command or subcommand: its name, its arguments
// (the usage line) and what it does. The top-level usage, every --help and
// every usage error are made from the list commands.
type command struct {
	name  string // "requests show"
	args  string // "ID --config FILE [--json] [--full]"
	about string // one or more lines
}

// commands is every command and subcommand, in the order of the usage.
var commands = []command{
	{"serve", "--config FILE [--listen HOST:PORT]", "run the server"},
	{"check-config", "--config FILE", "report every problem of a config file (exit 1 if there is one)"},
	{"hash-secret", "", "print the bcrypt hash of a secret, for client_secret_hash, password_hash and\n" +
		"user_code_hash: on a terminal it asks for the secret twice, without echoing it;\n" +
		"otherwise it reads one line of standard input:\n" +
		"  printf %s 'the-secret' | cibaproxy hash-secret"},
	{"demo-device", "[--listen HOST:PORT] [--auto approve|deny]", "a stand-in authentication device (webhook channel) and client notification\n" +
		"endpoint, for the quick start; it prints what arrives and how to answer"},
	{"requests list", "--config FILE [--client ID] [--state STATE] [--json] [--full]", "list the authentication requests"},
	{"requests show", "ID --config FILE [--json] [--full]", "show one request. ID is its auth_req_id or a unique prefix of 8 or more\n" +
		"characters"},
	{"requests cancel", "ID --config FILE [--json]", "deny a pending request (\"cancelled by an operator\"); ping and push clients\n" +
		"are told. ID is its auth_req_id or a unique prefix of 8 or more characters"},
	{"clients list", "--config FILE [--json]", "list the configured clients, without secrets"},
	{"users list", "--config FILE [--json]", "list the local upstream's users: approval method and passkeys"},
	{"users enroll", "USER --config FILE [--json]", "print a one-time link with which USER adds a passkey (docs/passkeys.md); it\n" +
		"expires after approval.passkeys.enrollment_ttl (default 24h)"},
	{"users passkeys remove", "USER ID --config FILE", "remove USER's passkey whose id starts with ID (8 or more characters, as\n" +
		"users list shows it)"},
	{"users webpush list", "USER --config FILE [--json]", "list USER's Web Push subscriptions (docs/webpush.md): short id, push\n" +
		"service host, when the browser subscribed; never the endpoint's path or the keys"},
	{"users webpush remove", "USER ID|--all --config FILE", "remove USER's Web Push subscription whose id starts with ID (8 or more\n" +
		"characters, as users webpush list shows it), or with --all every one of them"},
	{"keys rotate", "--config FILE [--publish-ahead DURATION] [--json]", "a new signing key: published now, signing after --publish-ahead; the old one\n" +
		"stays published until its tokens have expired"},
	{"version", "", "print the version"},
	{"help", "[COMMAND]", "this text, or the help of COMMAND (the same as COMMAND --help)"},
}

// usageLine is the usage line of the command name, or the lines of the
// subcommands of the group name ("requests").
func usageLine(name string) string {
	var b strings.Builder
	for _, c := range commands {
		if c.name != name && !strings.HasPrefix(c.name, name+" ") {
			continue
		}
		if b.Len() == 0 {
			b.WriteString("usage: ")
		} else {
			b.WriteString("       ")
		}
		b.WriteString(strings.TrimSpace("cibaproxy " + c.name + " " + c.args))
		b.WriteString("\n")
	}
	return b.String()
}

// usage is the top-level usage: every command with its arguments.
func usage() string {
	var b strings.Builder
	b.WriteString("usage: cibaproxy COMMAND [ARGUMENTS]\n\ncommands:\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "  %s\n", strings.TrimSpace(c.name+" "+c.args))
		for _, l := range strings.Split(c.about, "\n") {
			fmt.Fprintf(&b, "      %s\n", l)
		}
	}
	b.WriteString("\n`cibaproxy COMMAND --help` describes the flags of a command.\n")
	return b.String()
}

// commandName is the longest command name args start with ("requests
// show"), or args[0] when none is known.
func commandName(args []string) string {
	if len(args) > 2 {
		for _, c := range commands {
			if c.name == args[0]+" "+args[1]+" "+args[2] {
				return c.name
			}
		}
	}
	if len(args) > 1 {
		for _, c := range commands {
			if c.name == args[0]+" "+args[1] {
				return c.name
			}
		}
	}
	return args[0]
}

// isHelp reports whether a asks for help.
func isHelp(a string) bool { return a == "-h" || a == "-help" || a == "--help" || a == "help" }

// usageError is a wrong command line of the command cmd (exit code 2).
type usageError struct {
	error
	cmd string
}

var (
	// errHelpShown is returned once a command printed the help it was
	// asked for (exit code 0).
	errHelpShown = errors.New("help shown")
	// errInterrupted is returned by a command ended by Ctrl-C.
	errInterrupted = errors.New("interrupted")
)

// loadConfig loads the --config file path of the command name; no path is
// a usage error.
func loadConfig(name, path string) (*config.Config, error) {
	if path == "" {
		return nil, usageError{errors.New("--config FILE is required"), name}
	}
	return config.Load(path)
}

// loadAdminConfig is loadConfig for an operator command, which needs the
// values at the paths need only (config.TolerateUnset): an unset ${VAR}
// elsewhere, typically a secret the command does not use, does not stop
// it; an unset one it needs does.
func loadAdminConfig(name, path string, need ...string) (*config.Config, error) {
	if path == "" {
		return nil, usageError{errors.New("--config FILE is required"), name}
	}
	return config.Load(path, config.TolerateUnset(need...))
}

// What the operator commands need of the configuration (see
// loadAdminConfig): the store, with ciba.expired_grace, the retention of
// the redis store; the users commands the local upstream's users, their
// approval and the issuer (enrolment links); keys rotate the tokens'
// lifetimes, the key file (set, the command refuses) and fapi (the
// algorithm); clients list the fields it prints.
var (
	needStore   = []string{"store", "ciba.expired_grace"}
	needUsers   = append([]string{"issuer", "upstream.type", "upstream.local", "approval"}, needStore...)
	needKeys    = append([]string{"tokens.access_token_ttl", "tokens.id_token_ttl", "tokens.signing_key_file", "fapi"}, needStore...)
	needClients = []string{"clients[].client_id", "clients[].client_name", "clients[].backchannel_token_delivery_mode",
		"clients[].token_endpoint_auth_methods", "clients[].scopes", "clients[].backchannel_client_notification_endpoint"}
)

// cmdIO is the standard streams of a command.
type cmdIO struct {
	stdin          io.Reader
	stdout, stderr io.Writer
}

// noFlags defines no flag, for commands without any.
func noFlags(*flag.FlagSet) {}

// group handles the group of subcommands name ("requests") called with
// args: it returns the subcommand, or errHelpShown after printing the
// group's usage when help was asked for, or a usage error.
func (c cmdIO) group(name string, args []string) (string, error) {
	var subs []string
	for _, cmd := range commands {
		if sub, ok := strings.CutPrefix(cmd.name, name+" "); ok {
			subs = append(subs, sub)
		}
	}
	want := "want " + strings.Join(subs, ", ")
	if hint, ok := groupHints[name]; ok {
		want += " (" + hint + ")"
	}
	if len(args) == 0 {
		return "", usageError{errors.New(want), name}
	}
	if isHelp(args[0]) {
		fmt.Fprint(c.stdout, usageLine(name))
		fmt.Fprintf(c.stdout, "\n`cibaproxy %s SUBCOMMAND --help` says more.\n", name)
		return "", errHelpShown
	}
	for _, cmd := range commands {
		if cmd.name == name+" "+args[0] {
			return args[0], nil
		}
	}
	if strings.HasPrefix(args[0], "-") {
		return "", usageError{fmt.Errorf("the subcommand comes before %s: %s", args[0], want), name}
	}
	return "", usageError{fmt.Errorf("unknown subcommand %q: %s", args[0], want), name}
}

// groupHints point a user who looks for a subcommand a group lacks to the
// command that does it.
var groupHints = map[string]string{
	"users passkeys": "users list shows each user's passkeys",
}

// flags parses the flags of the command name, which takes no positional
// argument; see parseArgs.
func (c cmdIO) flags(name string, args []string, define func(*flag.FlagSet)) error {
	pos, err := c.parseArgs(name, args, define)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		if strings.HasPrefix(pos[0], "-") {
			return usageError{fmt.Errorf("unknown flag %s", pos[0]), name}
		}
		return usageError{fmt.Errorf("unexpected argument %q", pos[0]), name}
	}
	return nil
}

// parseArgs parses the flags of the command name, which may come before
// and after positional arguments (`show ID --config F` as well as `show
// --config F ID`), and returns the positional ones. An argument that starts
// with '-' but names no flag of the command is positional: auth_req_ids are
// base64url and may start with '-' (`cancel -GPZw…`); `--` ends the flags
// as usual. -h and --help print the command's help on stdout and return
// errHelpShown; a wrong flag is a usageError.
func (c cmdIO) parseArgs(name string, args []string, define func(*flag.FlagSet)) ([]string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors and help are reported here
	fs.Usage = func() {}
	define(fs)
	var pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return append(pos, args[i+1:]...), nil
		case len(a) < 2 || a[0] != '-' || notAFlag(fs, a):
			pos = append(pos, a)
		default:
			// One flag at a time, with its value when it takes one, so
			// that an id after it is not parsed as a flag.
			n := 1
			if takesValue(fs, a) && i+1 < len(args) {
				n = 2
			}
			if err := fs.Parse(args[i : i+n]); err != nil {
				if errors.Is(err, flag.ErrHelp) {
					c.help(name, fs)
					return nil, errHelpShown
				}
				return nil, usageError{err, name}
			}
			i += n - 1
		}
	}
	return pos, nil
}

// help prints the help of the command name, with the flags of fs, on
// stdout.
func (c cmdIO) help(name string, fs *flag.FlagSet) {
	fmt.Fprint(c.stdout, usageLine(name))
	for _, cmd := range commands {
		if cmd.name == name {
			fmt.Fprintf(c.stdout, "\n%s\n", cmd.about)
		}
	}
	var lines []string
	fs.VisitAll(func(f *flag.Flag) {
		arg, text := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if arg != "" {
			line += " " + strings.ToUpper(arg)
		}
		line += "\n      " + text
		if f.DefValue != "" && f.DefValue != "false" {
			line += fmt.Sprintf(" (default %s)", f.DefValue)
		}
		lines = append(lines, line)
	})
	if len(lines) > 0 {
		fmt.Fprintf(c.stdout, "\nflags:\n%s\n", strings.Join(lines, "\n"))
	}
}

// takesValue reports whether the flag a is one of fs's that takes its
// value from the next argument (not -name=value, not a boolean).
func takesValue(fs *flag.FlagSet, a string) bool {
	name := strings.TrimPrefix(a[1:], "-")
	if strings.Contains(name, "=") {
		return false
	}
	f := fs.Lookup(name)
	if f == nil {
		return false
	}
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return !ok || !b.IsBoolFlag()
}

// notAFlag reports whether a, which flag.Parse would take for a flag, is
// none of fs's (nor -h/-help): a positional argument that starts with '-'.
func notAFlag(fs *flag.FlagSet, a string) bool {
	if len(a) < 2 || a[0] != '-' || a == "--" {
		return false
	}
	name := strings.TrimPrefix(a[1:], "-")
	name, _, _ = strings.Cut(name, "=")
	return name != "h" && name != "help" && fs.Lookup(name) == nil
}
