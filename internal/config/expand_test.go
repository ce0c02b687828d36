package config

import (
	"strings"
	"testing"
)

func TestExpand(t *testing.T) {
	env := envMap(map[string]string{
		"HOST":  "ciba.example.com",
		"EMPTY": "",
		"COLON": "a: b # not a comment",
		"DOLLR": "${HOST}",
	})
	for _, tt := range []struct {
		name, in, want string
	}{
		{"${VAR} is the value of VAR", "https://${HOST}/", "https://ciba.example.com/"},
		{"${VAR} of an unset VAR is empty", "x${UNSET}y", "xy"},
		{"${VAR:-default} of a set VAR is its value", "${HOST:-other}", "ciba.example.com"},
		{"${VAR:-default} of an unset VAR is the default", "${UNSET:-http://127.0.0.1:8080}", "http://127.0.0.1:8080"},
		{"${VAR:-default} of an empty VAR is the default", "${EMPTY:-fallback}", "fallback"},
		{"${VAR} of an empty VAR is empty", "[${EMPTY}]", "[]"},
		{"${VAR:-} with an empty default", "[${UNSET:-}]", "[]"},
		{"$$ is a literal $", "pa$$word", "pa$word"},
		{"$${VAR} is a literal ${VAR}", "$${HOST}", "${HOST}"},
		{"$$$$ is $$", "$$$$", "$$"},
		{"a $ before anything else is kept", "$2a$10$abc $HOST $", "$2a$10$abc $HOST $"},
		{"values are not expanded again", "${DOLLR}", "${HOST}"},
		{"a default may hold references", "${UNSET:-${HOST}:443}", "ciba.example.com:443"},
		{"a default may hold a nested default", "${UNSET:-${ALSO_UNSET:-x}}", "x"},
		{"a default may hold $$", "${UNSET:-a$$b}", "a$b"},
		{"a value may hold ':' and '#'", "${COLON}", "a: b # not a comment"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := expand(tt.in, env)
			if err != nil || got != tt.want {
				t.Errorf("expand(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestExpandErrors(t *testing.T) {
	for _, tt := range []struct{ in, msg string }{
		{"${HOST", `unterminated "${" at character 1`},
		{"x${UNSET:-${A}", `unterminated "${" at character 2`},
		{"${}", "invalid reference ${}"},
		{"${1ABC}", "invalid reference ${1ABC}"},
		{"${A-B}", "invalid reference ${A-B}"},
		{"${A:=B}", "invalid reference ${A:=B}"},
	} {
		_, err := expand(tt.in, noEnv)
		if err == nil || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("expand(%q) error = %v, want %q", tt.in, err, tt.msg)
		}
	}
}

// TestExpansionInYAML checks expansion where it matters: after parsing, in
// string values only.
func TestExpansionInYAML(t *testing.T) {
	env := envMap(map[string]string{
		"ISSUER": "https://ciba.example.com",
		"SECRET": "s3cret: with # and: colons\nand a newline",
		"NUM":    "123",
		"BOOL":   "true",
		"KEY":    "client_secret",
		"EMPTY":  "",
	})
	data := doc(map[string]string{
		"issuer": "issuer: ${ISSUER}",
		"listen": "listen: ${EMPTY:-127.0.0.1:9000}",
		"upstream": localUsers("username: alice\npassword_hash: \"" + hashAlicePassword + "\"\n" +
			"claims:\n  employee_number: ${NUM}\n  verified: ${BOOL}\n  literal: 'costs $$5'\n  '${KEY}': kept"),
		"clients": clients("client_id: c1\nclient_secret: ${SECRET}\nclient_name: \"${NUM}\"\n" +
			"backchannel_token_delivery_mode: poll\nbackchannel_user_code_parameter: ${BOOL}"),
	})
	c := mustParse(t, data, env)
	if c.Issuer != "https://ciba.example.com" {
		t.Errorf("issuer = %q", c.Issuer)
	}
	if c.Listen != "127.0.0.1:9000" {
		t.Errorf("listen = %q, want the default used for an empty variable", c.Listen)
	}
	cl := c.Clients[0]
	if cl.Secret != "s3cret: with # and: colons\nand a newline" {
		t.Errorf("client_secret = %q, want the value with ':' and '#' intact", cl.Secret)
	}
	if cl.Name != "123" || !cl.UserCodeParameter {
		t.Errorf("client_name %q, backchannel_user_code_parameter %v", cl.Name, cl.UserCodeParameter)
	}
	u := c.Upstream.Local.Users[0]
	if u.PasswordHash != hashAlicePassword {
		t.Errorf("bcrypt hash changed by expansion: %q", u.PasswordHash)
	}
	// Expanded values stay strings: "123" is not turned into a number.
	for k, want := range map[string]any{"employee_number": "123", "verified": "true", "literal": "costs $5", "${KEY}": "kept"} {
		if got := u.Claims[k]; got != want {
			t.Errorf("claims[%q] = %#v, want %#v", k, got, want)
		}
	}
}

// TestExpansionUsesProcessEnvironment checks Parse reads the process
// environment.
func TestExpansionUsesProcessEnvironment(t *testing.T) {
	t.Setenv("CIBAPROXY_TEST_ISSUER", "https://env.example.com")
	c, err := Parse([]byte(doc(map[string]string{"issuer": "issuer: ${CIBAPROXY_TEST_ISSUER}"})), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Issuer != "https://env.example.com" {
		t.Errorf("issuer = %q", c.Issuer)
	}
}

// TestExpansionErrorHasPath checks a bad reference is reported at its value,
// once, with no follow-up problem.
func TestExpansionErrorHasPath(t *testing.T) {
	ps := problemsOf(t, doc(map[string]string{"clients": clients("client_id: c1\nclient_secret: ab${cd\nbackchannel_token_delivery_mode: poll")}), noEnv)
	if len(ps) != 1 || ps[0].Path != "clients[0].client_secret" || ps[0].Line != 9 || strings.Contains(ps[0].Message, "ab") {
		t.Errorf("got %v, want one problem at clients[0].client_secret line 9 that does not quote the secret", ps)
	}
}
