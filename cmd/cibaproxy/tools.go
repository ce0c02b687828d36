package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/term"
)

// cmdCheckConfig loads a config file and reports every problem it has, or
// its warnings (Config.Warnings) and a summary.
func cmdCheckConfig(args []string, c cmdIO) error {
	var path string
	if err := c.flags("check-config", args, func(fs *flag.FlagSet) {
		fs.StringVar(&path, "config", "", "config `file` (YAML)")
	}); err != nil {
		return err
	}
	cfg, err := loadConfig("check-config", path)
	if err != nil {
		return err
	}
	// Warnings go to standard error, one line each, and leave the exit
	// status 0: the configuration is valid, if likely not as meant.
	for _, w := range cfg.Warnings() {
		fmt.Fprintf(c.stderr, "%s: warning: %s\n", path, w)
	}
	fmt.Fprintf(c.stdout, "%s: ok (issuer %s, %s, store %s, upstream %s)\n", path, cfg.Issuer,
		plural(len(cfg.Clients), "client", "clients"), cfg.Store.Type, cfg.Upstream.Type)
	return nil
}

// cmdHashSecret prints the bcrypt hash of a secret, for
// client_secret_hash, password_hash and user_code_hash in the config. On a
// terminal it asks for the secret twice without echoing it; otherwise it
// reads one line of standard input, without a prompt. Ctrl-C (ctx) ends
// it, the terminal restored.
func cmdHashSecret(ctx context.Context, args []string, c cmdIO) error {
	if err := c.flags("hash-secret", args, noFlags); err != nil {
		return err
	}
	var (
		secret string
		err    error
	)
	if f, ok := c.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		secret, err = promptSecret(ctx, int(f.Fd()), c.stderr)
	} else {
		secret, err = readLine(ctx, c.stdin)
	}
	if err != nil {
		return err
	}
	if secret == "" {
		return usageError{errors.New("the secret is empty: type it when asked, or give it on standard input, e.g. printf %s 'the-secret' | cibaproxy hash-secret"), "hash-secret"}
	}
	if len(secret) > 72 {
		return errors.New("bcrypt uses at most 72 bytes of a secret; this one is longer")
	}
	h, err := bcrypt.GenerateFromPassword([]byte(secret), bcrypt.DefaultCost)
	if err != nil {
		return fmt.Errorf("hash: %w", err)
	}
	fmt.Fprintln(c.stdout, string(h))
	return nil
}

// readLine reads one line of r, without its line ending; ctx ends the wait.
func readLine(ctx context.Context, r io.Reader) (string, error) {
	type result struct {
		line string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		line, err := bufio.NewReader(r).ReadString('\n')
		if errors.Is(err, io.EOF) {
			err = nil
		}
		done <- result{strings.TrimRight(line, "\r\n"), err}
	}()
	select {
	case res := <-done:
		if res.err != nil {
			return "", fmt.Errorf("read the secret: %w", res.err)
		}
		return res.line, nil
	case <-ctx.Done():
		return "", errInterrupted
	}
}

// promptSecret asks for the secret on the terminal fd twice, the prompts
// on prompt, the typing not echoed. ctx (Ctrl-C) ends the wait, with the
// terminal as it was.
func promptSecret(ctx context.Context, fd int, prompt io.Writer) (string, error) {
	state, err := term.GetState(fd)
	if err != nil {
		return "", fmt.Errorf("terminal: %w", err)
	}
	ask := func(p string) (string, error) {
		fmt.Fprint(prompt, p)
		type result struct {
			b   []byte
			err error
		}
		done := make(chan result, 1)
		go func() {
			b, err := term.ReadPassword(fd)
			done <- result{b, err}
		}()
		select {
		case res := <-done:
			fmt.Fprintln(prompt)
			if res.err != nil {
				return "", fmt.Errorf("read the secret: %w", res.err)
			}
			return string(res.b), nil
		case <-ctx.Done():
			// ReadPassword turned echo off and is still waiting: turn it
			// back on before the process ends.
			_ = term.Restore(fd, state)
			return "", errInterrupted
		}
	}
	first, err := ask("Secret (not shown): ")
	if err != nil || first == "" {
		return first, err
	}
	again, err := ask("Again, to check: ")
	if err != nil {
		return "", err
	}
	if again != first {
		return "", errors.New("the two entries differ; nothing was hashed")
	}
	return first, nil
}
