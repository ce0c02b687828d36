package config

import (
	"slices"
	"strings"
	"testing"
)

// TestUnsetFallback: in strict mode an unset ${VAR} without a default in a
// value where empty means cibaproxy's own default state (store.path,
// tokens.signing_key_file) is a problem naming the value and the variable
// and suggesting ${VAR:-}; ${VAR:-} and a variable set to "" load with the
// default as before; TolerateUnset does not refuse it when not needed.
func TestUnsetFallback(t *testing.T) {
	for _, tc := range []struct {
		path, section string
		defaulted     func(*Config) bool
	}{
		{"store.path", "store:\n  path: %s", func(c *Config) bool { return c.Store.Path == defaultStorePath }},
		{"tokens.signing_key_file", "tokens:\n  signing_key_file: %s", func(c *Config) bool {
			return c.Tokens.SigningKeyFile == "" && c.Tokens.SigningKey == nil
		}},
	} {
		section := strings.SplitN(tc.path, ".", 2)[0]
		with := func(ref string) string {
			return doc(map[string]string{section: strings.Replace(tc.section, "%s", ref, 1)})
		}

		ps := problemsOf(t, with("${UNSET_X}"), noEnv)
		if len(ps) != 1 || ps[0].Path != tc.path || ps[0].Line == 0 ||
			!strings.Contains(ps[0].Message, "${UNSET_X}, which is not set") || !strings.Contains(ps[0].Message, "${UNSET_X:-}") {
			t.Errorf("%s: ${UNSET_X} unset: %v, want one problem at %s naming ${UNSET_X} and suggesting ${UNSET_X:-}", tc.path, ps, tc.path)
		}
		if strings.Count(ps.Error(), "UNSET_X}, which is not set") != 1 {
			t.Errorf("%s: the variable is named more than once: %v", tc.path, ps)
		}

		// Part of the value: still refused (the path would be another one).
		if ps := problemsOf(t, with("${UNSET_X}/x"), noEnv); !slices.ContainsFunc(ps, func(p Problem) bool {
			return p.Path == tc.path && strings.Contains(p.Message, "${UNSET_X:-}")
		}) {
			t.Errorf("%s: ${UNSET_X}/x unset: %v", tc.path, ps)
		}

		if c := mustParse(t, with("${UNSET_X:-}"), noEnv); !tc.defaulted(c) {
			t.Errorf("%s: ${UNSET_X:-} unset: not the default: %+v %+v", tc.path, c.Store, c.Tokens)
		}
		if c := mustParse(t, with("${EMPTY_X}"), envMap(map[string]string{"EMPTY_X": ""})); !tc.defaulted(c) {
			t.Errorf("%s: ${EMPTY_X} set to \"\": not the default: %+v %+v", tc.path, c.Store, c.Tokens)
		}

		if _, err := parse([]byte(with("${UNSET_X}")), "test.yaml", noEnv, TolerateUnset("clients")); err != nil {
			t.Errorf("%s: tolerant, not needed: %v", tc.path, err)
		}
	}
}
