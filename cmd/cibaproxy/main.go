// Command cibaproxy is a CIBA gateway: an OpenID Connect Client-Initiated
// Backchannel Authentication server that absorbs client polling and gets
// tokens from an identity provider (or, with the local upstream, issues
// them itself).
//
//	cibaproxy serve --config FILE [--listen HOST:PORT]
//	cibaproxy check-config --config FILE
//	cibaproxy hash-secret
//	cibaproxy demo-device [--listen HOST:PORT] [--auto approve|deny]
//	cibaproxy requests list --config FILE [--client ID] [--state STATE] [--json] [--full]
//	cibaproxy requests show ID --config FILE [--json] [--full]
//	cibaproxy requests cancel ID --config FILE [--json]
//	cibaproxy clients list --config FILE [--json]
//	cibaproxy users list --config FILE [--json]
//	cibaproxy users enroll USER --config FILE [--json]
//	cibaproxy users passkeys remove USER ID --config FILE
//	cibaproxy users webpush list USER --config FILE [--json]
//	cibaproxy users webpush remove USER ID|--all --config FILE
//	cibaproxy keys rotate --config FILE [--publish-ahead DURATION] [--json]
//	cibaproxy version
//	cibaproxy help [COMMAND]
//
// Every command says more with --help (cli.go).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"syscall"

	"github.com/cibaproxy/cibaproxy/internal/config"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is main without the process: it returns the exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage())
		return 2
	}
	if isHelp(args[0]) {
		if len(args) == 1 || isHelp(args[1]) {
			fmt.Fprint(stdout, usage())
			return 0
		}
		// help COMMAND [SUBCOMMAND] is COMMAND [SUBCOMMAND] --help.
		return run(ctx, append(slices.Clone(args[1:]), "--help"), stdin, stdout, stderr)
	}
	c := cmdIO{stdin: stdin, stdout: stdout, stderr: stderr}
	var err error
	switch args[0] {
	case "serve":
		err = cmdServe(ctx, args[1:], c)
	case "check-config":
		err = cmdCheckConfig(args[1:], c)
	case "demo-device":
		err = cmdDemoDevice(ctx, args[1:], c)
	case "requests":
		err = cmdRequests(ctx, args[1:], c)
	case "clients":
		err = cmdClients(args[1:], c)
	case "users":
		err = cmdUsers(ctx, args[1:], c)
	case "keys":
		err = cmdKeys(ctx, args[1:], c)
	case "hash-secret":
		err = cmdHashSecret(ctx, args[1:], c)
	case "version", "--version", "-v":
		if err = c.flags("version", args[1:], noFlags); err == nil {
			fmt.Fprintln(stdout, "cibaproxy", buildVersion())
		}
	default:
		fmt.Fprintf(stderr, "cibaproxy: unknown command %q\n\n%s", args[0], usage())
		return 2
	}
	return exitCode(err, commandName(args), stderr)
}

// exitCode reports err of the command name on stderr and returns the exit
// code: 0 for none (or help that was asked for), 2 for a wrong command
// line, 130 for a command ended by Ctrl-C, 1 for anything else.
func exitCode(err error, name string, stderr io.Writer) int {
	var (
		ue usageError
		ps config.Problems
	)
	switch {
	case err == nil, errors.Is(err, errHelpShown):
		return 0
	case errors.As(err, &ue):
		if ue.cmd != "" {
			name = ue.cmd // "users passkeys", not "users"
		}
		fmt.Fprintf(stderr, "cibaproxy %s: %v\n%s", name, err, usageLine(ue.cmd))
		fmt.Fprintf(stderr, "(cibaproxy %s --help says more)\n", ue.cmd)
		return 2
	case errors.Is(err, errInterrupted):
		fmt.Fprintf(stderr, "\ncibaproxy %s: %v\n", name, err)
		return 130
	case errors.As(err, &ps):
		// One problem per line, each as FILE:LINE: PATH: MESSAGE (what
		// editors jump to), then one line that says whose they are.
		for _, p := range ps {
			fmt.Fprintln(stderr, p)
		}
		fmt.Fprintf(stderr, "cibaproxy %s: %s in the configuration\n", name, plural(len(ps), "problem", "problems"))
		return 1
	}
	fmt.Fprintf(stderr, "cibaproxy %s: %v\n", name, err)
	return 1
}

// plural is "1 client", "2 clients".
func plural(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}

func buildVersion() string {
	if version != "dev" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return version
}
