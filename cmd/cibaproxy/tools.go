package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"golang.org/x/crypto/bcrypt"

	"github.com/cibaproxy/cibaproxy/internal/config"
)

// cmdCheckConfig loads a config file and reports every problem it has.
func cmdCheckConfig(args []string, stdout, stderr io.Writer) error {
	var path string
	if err := flags("check-config", args, stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&path, "config", "", "config file (YAML)")
	}); err != nil {
		return err
	}
	if path == "" {
		return usageError{errors.New("--config FILE is required")}
	}
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: ok (issuer %s, %d clients, store %s, upstream %s)\n", path, cfg.Issuer, len(cfg.Clients), cfg.Store.Type, cfg.Upstream.Type)
	return nil
}

// cmdHashSecret reads one secret from stdin and prints its bcrypt hash, for
// client_secret_hash, password_hash and user_code_hash in the config.
func cmdHashSecret(stdin io.Reader, stdout io.Writer) error {
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read secret: %w", err)
	}
	secret := strings.TrimRight(line, "\r\n")
	if secret == "" {
		return usageError{errors.New("give the secret on standard input, e.g. echo -n 's3cret' | cibaproxy hash-secret")}
	}
	if len(secret) > 72 {
		return errors.New("bcrypt uses at most 72 bytes of a secret; this one is longer")
	}
	h, err := bcrypt.GenerateFromPassword([]byte(secret), bcrypt.DefaultCost)
	if err != nil {
		return fmt.Errorf("hash: %w", err)
	}
	fmt.Fprintln(stdout, string(h))
	return nil
}
