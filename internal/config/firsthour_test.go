package config

import (
	"strings"
	"testing"
)

// TestProblemNamesTheUnsetVariable: a value that is empty because a
// variable is unset or empty says which, whatever the problem with it is;
// a default or a set variable adds nothing.
func TestProblemNamesTheUnsetVariable(t *testing.T) {
	env := envMap(map[string]string{"EMPTY": "", "SET": "c1"})
	for _, tc := range []struct {
		name, data, path, want string
	}{
		{"unset, required", doc(map[string]string{"issuer": "issuer: ${ISS}"}), "issuer",
			"required (from ${ISS}, which is not set): the issuer URL"},
		{"empty, required", doc(map[string]string{"issuer": "issuer: ${EMPTY}"}), "issuer",
			"required (from ${EMPTY}, which is empty)"},
		{"unset inside a value", doc(map[string]string{"issuer": "issuer: https://${HOST}/ciba"}), "issuer",
			`must be an absolute http or https URL, got "https:///ciba" (from ${HOST}, which is not set)`},
		{"two of them", doc(map[string]string{"issuer": "issuer: ${SCHEME}${HOST}"}), "issuer",
			"required (from ${SCHEME}, which is not set and ${HOST}, which is not set)"},
		{"a secret", doc(map[string]string{"clients": clients("client_id: ${SET}\nclient_secret: ${C1_SECRET}\nbackchannel_token_delivery_mode: poll")}),
			"clients[0].client_secret", "(from ${C1_SECRET}, which is not set)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ps := problemsOf(t, tc.data, env)
			for _, p := range ps {
				if p.Path == tc.path {
					if !strings.Contains(p.Message, tc.want) {
						t.Errorf("%s: %q, want it to contain %q", p.Path, p.Message, tc.want)
					}
					return
				}
			}
			t.Errorf("no problem at %s: %v", tc.path, ps)
		})
	}
	// A default, or a variable that is set, is not mentioned.
	ps := problemsOf(t, doc(map[string]string{
		"issuer":  "issuer: ${ISS:-not a url}",
		"clients": clients("client_id: ${SET}\nbackchannel_token_delivery_mode: poll"),
	}), env)
	for _, p := range ps {
		if strings.Contains(p.Message, "${") {
			t.Errorf("%s: %q names a variable that has a value or a default", p.Path, p.Message)
		}
	}
}

// TestMisindentedLineIsReportedAtItsLine: yaml.v3 reports a line that
// breaks a block mapping or list at the line where that collection
// starts; the problem names the wrong line itself.
func TestMisindentedLineIsReportedAtItsLine(t *testing.T) {
	for _, tc := range []struct {
		name, data string
		line       int
	}{
		{"a list item's key", "issuer: x\nclients:\n  - client_id: a\n   client_secret: b\n", 4},
		{"a mapping's key", "issuer: x\nlog:\n  level: info\n format: text\n", 4},
		{"further down", "issuer: x\nclients:\n  - client_id: a\n    scopes: [a,\n      b]\n    client_name: A\n   client_secret: b\nlisten: y\n", 7},
		// Other errors keep yaml.v3's line.
		{"an unclosed flow list", "issuer: [a,\n  b\nlisten: y\n", 2},
		{"a missing colon", "issuer: x\nlisten: y\nlog\nclients: z\n", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ps := problemsOf(t, tc.data, noEnv)
			if len(ps) != 1 || ps[0].Line != tc.line || !strings.HasPrefix(ps[0].Message, "invalid YAML") {
				t.Errorf("got %v, want one syntax error at line %d\n--- config:\n%s", ps, tc.line, tc.data)
			}
		})
	}
}
