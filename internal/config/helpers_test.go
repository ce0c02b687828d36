package config

import (
	"errors"
	"strings"
	"testing"
)

// Hashes of the quick start (bcrypt, cost 10). Validation only parses them,
// so tests stay fast.
const (
	hashAlicePassword = "$2a$10$spJ.y58rlNOoHwC/fKk3.OoacF3R0k9OFHXbH8WIIXHS/cr20EHNu"
	hashAliceCode     = "$2a$10$Rhml4XyIQPTo4eVSHG73sebybQe5y9oLcz01QqlaVBv341fKIIn/y"
	hashBobPassword   = "$2a$10$.P16Yabwk7tQnDCMfpaozOs7u2Fr.GvOssqoEjqrUPPP0WiAt6MRi"
)

// demoPublicJWK is the public half of examples/keys/demo-poll.private.jwk.
const demoPublicJWK = `{"kty":"EC","crv":"P-256","kid":"demo-poll-1","alg":"ES256","use":"sig",` +
	`"x":"1Uq-qWYl4XWcPCO8wkB59-EpdHLQEabd6B0_be8JP7g","y":"OP4qyNXJFAMUXLA7DdxuNWY2hk4X8M0QuIzX4aucIRM"}`

// demoPrivateJWK is examples/keys/demo-poll.private.jwk.
const demoPrivateJWK = `{"kty":"EC","crv":"P-256","kid":"demo-poll-1","alg":"ES256","use":"sig",` +
	`"x":"1Uq-qWYl4XWcPCO8wkB59-EpdHLQEabd6B0_be8JP7g","y":"OP4qyNXJFAMUXLA7DdxuNWY2hk4X8M0QuIzX4aucIRM",` +
	`"d":"VyXb03HCxcW2HiV8dJLgYC_J-shd4Tg_6Ct6Nczmns4"}`

// sectionOrder is the order top-level sections are written in by doc.
var sectionOrder = []string{"issuer", "listen", "log", "store", "upstream", "ciba", "tokens", "channels", "clients", "outbound", "limits"}

// baseSections make a minimal valid configuration.
var baseSections = map[string]string{
	"issuer":   "issuer: https://ciba.example.com",
	"upstream": "upstream:\n  local:\n" + indent(users("username: alice\npassword_hash: \""+hashAlicePassword+"\""), 4),
	"clients":  clients("client_id: c1\nclient_secret: s1\nbackchannel_token_delivery_mode: poll"),
}

// doc returns the base configuration with some sections replaced; an empty
// replacement removes the section.
func doc(over map[string]string) string {
	var b strings.Builder
	for _, k := range sectionOrder {
		s, ok := over[k]
		if !ok {
			s = baseSections[k]
		}
		if s != "" {
			b.WriteString(s)
			b.WriteString("\n")
		}
	}
	return b.String()
}

// item turns "a: 1\nb: 2" into a YAML list item "- a: 1\n  b: 2".
func item(body string) string {
	lines := strings.Split(strings.TrimSpace(body), "\n")
	for i := range lines {
		if i == 0 {
			lines[i] = "- " + lines[i]
		} else {
			lines[i] = "  " + lines[i]
		}
	}
	return strings.Join(lines, "\n")
}

// indent indents every line of s by n spaces.
func indent(s string, n int) string {
	pad := strings.Repeat(" ", n)
	lines := strings.Split(s, "\n")
	for i := range lines {
		if lines[i] != "" {
			lines[i] = pad + lines[i]
		}
	}
	return strings.Join(lines, "\n")
}

// clients returns a clients section with one item per body.
func clients(bodies ...string) string {
	var items []string
	for _, b := range bodies {
		items = append(items, indent(item(b), 2))
	}
	return "clients:\n" + strings.Join(items, "\n")
}

// users returns a users: key (at column 0) with one item per body.
func users(bodies ...string) string {
	var items []string
	for _, b := range bodies {
		items = append(items, indent(item(b), 2))
	}
	return "users:\n" + strings.Join(items, "\n")
}

// localUsers returns an upstream section with the given users.
func localUsers(bodies ...string) string {
	return "upstream:\n  local:\n" + indent(users(bodies...), 4)
}

// noEnv is an empty environment.
func noEnv(string) (string, bool) { return "", false }

// envMap is an environment made of a map.
func envMap(m map[string]string) lookupFunc {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

// mustParse parses a configuration that must be valid.
func mustParse(t *testing.T, data string, lookup lookupFunc) *Config {
	t.Helper()
	c, err := parse([]byte(data), "test.yaml", lookup)
	if err != nil {
		t.Fatalf("parse failed:\n%v\n--- config:\n%s", err, data)
	}
	return c
}

// problemsOf parses a configuration that must be invalid.
func problemsOf(t *testing.T, data string, lookup lookupFunc) Problems {
	t.Helper()
	c, err := parse([]byte(data), "test.yaml", lookup)
	if err == nil {
		t.Fatalf("parse succeeded (%+v), want problems\n--- config:\n%s", c, data)
	}
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("error is %T, want Problems: %v", err, err)
	}
	if c != nil {
		t.Errorf("parse returned a config with its problems")
	}
	return ps
}

// oneProblemAt fails t unless data has exactly one problem, at a client's
// key, with a line, and saying msg.
func oneProblemAt(t *testing.T, data, key, msg string) {
	t.Helper()
	ps := problemsOf(t, data, noEnv)
	if len(ps) != 1 {
		t.Fatalf("got %d problems, want 1:\n%v", len(ps), ps)
	}
	p := ps[0]
	if !strings.HasSuffix(p.Path, "."+key) || !strings.Contains(p.Message, msg) || p.Line <= 0 {
		t.Fatalf("problem %q, want one at %s with a line, containing %q", p, key, msg)
	}
}
