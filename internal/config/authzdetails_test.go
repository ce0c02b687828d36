package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// schemaDir writes the named schema files into a temporary directory and
// returns it.
func schemaDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const paymentSchema = `{"type":"object","required":["type","instructedAmount"],
 "properties":{"instructedAmount":{"type":"object","required":["currency","amount"]}}}`

func TestAuthorizationDetails(t *testing.T) {
	t.Run("off by default", func(t *testing.T) {
		c := mustParse(t, doc(nil), noEnv)
		a := c.AuthorizationDetails
		if a.Registry != nil || len(a.TypeNames()) != 0 || a.MaxBytes != 8192 || a.MaxCount != 10 {
			t.Errorf("authorization_details = %+v", a)
		}
		if got := c.Clients[0].Checked.AuthzDetailsTypes(); got != nil {
			t.Errorf("client types = %v", got)
		}
	})
	t.Run("types, bounds and a client allowlist", func(t *testing.T) {
		dir := schemaDir(t, map[string]string{"payment.json": paymentSchema, "accounts.json": `{"type":"object"}`})
		section := "authorization_details:\n  max_bytes: 4096\n  max_count: 3\n  types:\n" +
			"    payment_initiation:\n      schema_file: " + filepath.Join(dir, "payment.json") + "\n" +
			"    \"https://bank.example/accounts\":\n      schema_file: " + filepath.Join(dir, "accounts.json") + "\n"
		c := mustParse(t, doc(map[string]string{
			"limits":  section,
			"clients": clients("client_id: c1\nclient_secret: s1\nbackchannel_token_delivery_mode: poll\nauthorization_details_types: [payment_initiation]"),
		}), noEnv)
		a := c.AuthorizationDetails
		if a.MaxBytes != 4096 || a.MaxCount != 3 || a.Registry == nil {
			t.Fatalf("authorization_details = %+v", a)
		}
		if got := a.Registry.Types(); !slices.Equal(got, []string{"https://bank.example/accounts", "payment_initiation"}) {
			t.Errorf("types = %v", got)
		}
		if lim := a.Registry.Limits(); lim.MaxBytes != 4096 || lim.MaxCount != 3 {
			t.Errorf("limits = %+v", lim)
		}
		allowed := c.Clients[0].Checked.AuthzDetailsTypes()
		if !slices.Equal(allowed, []string{"payment_initiation"}) {
			t.Errorf("client types = %v", allowed)
		}
		// The compiled schema applies.
		if _, err := a.Registry.ParseAndCheck(`[{"type":"payment_initiation"}]`, allowed); err == nil || !strings.Contains(err.Error(), "instructedAmount") {
			t.Errorf("schema not applied: %v", err)
		}
		if _, err := a.Registry.ParseAndCheck(`[{"type":"payment_initiation","instructedAmount":{"currency":"EUR","amount":"1"}}]`, allowed); err != nil {
			t.Errorf("valid detail refused: %v", err)
		}
	})
	t.Run("a relative schema file is relative to the configuration", func(t *testing.T) {
		dir := schemaDir(t, map[string]string{"p.json": paymentSchema})
		data := doc(map[string]string{"limits": "authorization_details:\n  types:\n    p:\n      schema_file: p.json\n"})
		c, err := parse([]byte(data), filepath.Join(dir, "cibaproxy.yaml"), noEnv)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.AuthorizationDetails.Types["p"].SchemaFile; got != filepath.Join(dir, "p.json") {
			t.Errorf("schema_file = %s", got)
		}
	})
}

// TestAuthorizationDetailsRules breaks each rule and checks the problem's
// path and message.
func TestAuthorizationDetailsRules(t *testing.T) {
	dir := schemaDir(t, map[string]string{
		"ok.json":      `{"type":"object"}`,
		"notjson.json": `{"type":`,
		"bad.json":     `{"type":"nonsense"}`,
		"ref.json":     `{"$ref":"https://schemas.example/other.json"}`,
	})
	typ := func(name, file string) string {
		return "authorization_details:\n  types:\n    " + name + ":\n      schema_file: " + filepath.Join(dir, file) + "\n"
	}
	client := func(extra string) string {
		return clients("client_id: c1\nclient_secret: s1\nbackchannel_token_delivery_mode: poll\n" + extra)
	}
	tests := []struct {
		name, section, clients, path, msg string
	}{
		{"max_bytes at least 64", "authorization_details:\n  max_bytes: 10", "", "authorization_details.max_bytes", "from 64 to 16384"},
		{"max_bytes at most 16 KiB", "authorization_details:\n  max_bytes: 16385", "", "authorization_details.max_bytes", "from 64 to 16384"},
		{"max_bytes not 0", "authorization_details:\n  max_bytes: 0", "", "authorization_details.max_bytes", "got 0"},
		{"max_count at least 1", "authorization_details:\n  max_count: 0", "", "authorization_details.max_count", "from 1 to 100"},
		{"max_count at most 100", "authorization_details:\n  max_count: 101", "", "authorization_details.max_count", "from 1 to 100"},
		{"schema_file required", "authorization_details:\n  types:\n    p: {}", "", "authorization_details.types.p.schema_file", "required"},
		{"schema_file readable", typ("p", "missing.json"), "", "authorization_details.types.p.schema_file", "cannot read the schema"},
		{"schema is JSON", typ("p", "notjson.json"), "", "authorization_details.types.p.schema_file", "not JSON"},
		{"schema compiles", typ("p", "bad.json"), "", "authorization_details.types.p.schema_file", "compile the schema"},
		{"schema refers to nothing outside", typ("p", "ref.json"), "", "authorization_details.types.p.schema_file", "only references within the schema"},
		{"type name has no space", typ("'a b'", "ok.json"), "", "authorization_details.types.a b", "printable ASCII without spaces"},
		{"type is a mapping", "authorization_details:\n  types:\n    p: x.json", "", "authorization_details.types.p", "expected a mapping"},
		{"types is a mapping", "authorization_details:\n  types: [p]", "", "authorization_details.types", "expected a mapping"},
		{"type keys are checked", "authorization_details:\n  types:\n    p:\n      schema: x.json", "", "authorization_details.types.p.schema", `unknown key "schema"`},
		{"client type configured", typ("p", "ok.json"), client("authorization_details_types: [q]"), "clients[0].authorization_details_types[0]", `type "q" is not one of authorization_details.types`},
		{"client type without any configured", "", client("authorization_details_types: [p]"), "clients[0].authorization_details_types[0]", "not one of authorization_details.types"},
		{"client type once", typ("p", "ok.json"), client("authorization_details_types: [p, p]"), "clients[0].authorization_details_types[1]", "listed twice"},
		{"client type is a name", typ("p", "ok.json"), client("authorization_details_types: ['']"), "clients[0].authorization_details_types[0]", "1 to 200 characters"},
		{"public client sends none", typ("p", "ok.json"),
			clients("client_id: c1\ntoken_endpoint_auth_methods: [none]\ndevice_authorization: true\nauthorization_details_types: [p]"),
			"clients[0].authorization_details_types", "public client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			over := map[string]string{"limits": tt.section}
			if tt.clients != "" {
				over["clients"] = tt.clients
			}
			ps := problemsOf(t, doc(over), noEnv)
			for _, p := range ps {
				if p.Path == tt.path && strings.Contains(p.Message, tt.msg) {
					return
				}
			}
			t.Errorf("no problem at %s saying %q; got:\n%v", tt.path, tt.msg, ps)
		})
	}
	t.Run("every upstream", func(t *testing.T) {
		// The ciba upstream relays them and the oidc upstream sends them
		// in the authorization request: neither is refused any more.
		over := map[string]string{"limits": typ("p", "ok.json")}
		for _, u := range []string{UpstreamOIDC, UpstreamCIBA} {
			over["upstream"] = "upstream:\n  type: " + u
			ps := problemsOf(t, doc(over), noEnv)
			if slices.ContainsFunc(ps, func(p Problem) bool { return strings.HasPrefix(p.Path, "authorization_details") }) {
				t.Errorf("%s: a problem at authorization_details; got:\n%v", u, ps)
			}
		}
	})
}
