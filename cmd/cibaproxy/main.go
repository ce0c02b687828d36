// Command cibaproxy is a CIBA gateway: an OpenID Connect Client-Initiated
// Backchannel Authentication server that absorbs client polling and gets
// tokens from an identity provider (or, with the local upstream, issues
// them itself).
//
//	cibaproxy serve --config FILE [--listen HOST:PORT]
//	cibaproxy check-config --config FILE
//	cibaproxy hash-secret
//	cibaproxy demo-device [--listen HOST:PORT] [--auto approve|deny]
//	cibaproxy requests list|show ID|cancel ID --config FILE [--json] [--full]
//	cibaproxy clients list --config FILE [--json]
//	cibaproxy keys rotate --config FILE [--publish-ahead D] [--json]
//	cibaproxy version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `usage: cibaproxy <command> [flags]

commands:
  serve --config FILE [--listen HOST:PORT]   run the server
  check-config --config FILE                 report every problem of a config file
  hash-secret                                read a secret on stdin, print its bcrypt hash
  demo-device [--listen ADDR] [--auto approve|deny]
                                             a stand-in authentication device and client
                                             notification endpoint, for the quick start
  requests list --config FILE [--client ID] [--state STATE] [--json] [--full]
                                             list the authentication requests
  requests show ID --config FILE [--json] [--full]
                                             show one request (ID: auth_req_id or a
                                             unique prefix of 8 or more characters)
  requests cancel ID --config FILE [--json]  deny a pending request ("cancelled by an
                                             operator"); ping and push clients are told
  clients list --config FILE [--json]        list the configured clients, without secrets
  keys rotate --config FILE [--publish-ahead 10m] [--json]
                                             a new signing key: published now, signing
                                             after --publish-ahead; the old one stays
                                             published until its tokens have expired
  version                                    print the version
`

// run is main without the process: it returns the exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = cmdServe(ctx, args[1:], stderr)
	case "check-config":
		err = cmdCheckConfig(args[1:], stdout, stderr)
	case "demo-device":
		err = cmdDemoDevice(ctx, args[1:], stdout, stderr)
	case "requests":
		err = cmdRequests(ctx, args[1:], stdout, stderr)
	case "clients":
		err = cmdClients(args[1:], stdout, stderr)
	case "keys":
		err = cmdKeys(ctx, args[1:], stdout, stderr)
	case "hash-secret":
		err = cmdHashSecret(stdin, stdout)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "cibaproxy", buildVersion())
		return 0
	case "help", "--help", "-h":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "cibaproxy: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "cibaproxy %s: %v\n", args[0], err)
			return 2
		}
		fmt.Fprintf(stderr, "cibaproxy %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

// usageError is a wrong command line (exit code 2).
type usageError struct{ error }

// flags parses a subcommand's flags, turning flag errors into usage errors.
func flags(name string, args []string, stderr io.Writer, define func(*flag.FlagSet)) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	define(fs)
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	return nil
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
