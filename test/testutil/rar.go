package testutil

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Agent is the delegate client of RARConfig: it acts for the user
// (acts_for_user) and may send payment_initiation and account_information
// authorization_details.
var Agent = Client{ID: "agent", Secret: "agent-secret"}

// AgentName is Agent's client_name, which the approval page shows.
const AgentName = "Travel Agent"

// AccountInformationSchema is the JSON Schema of the account_information
// type RARConfig configures.
const AccountInformationSchema = `{"type":"object","required":["type","actions"],"properties":{
 "type":{"const":"account_information"},
 "actions":{"type":"array","items":{"enum":["list_accounts","read_balances","read_transactions"]}},
 "locations":{"type":"array","items":{"type":"string"}}},"additionalProperties":false}`

// RARConfig writes into a temporary directory the configuration at base
// (the quick start's, say) with Rich Authorization Requests on: the types
// payment_initiation (examples/schemas/payment_initiation.json) and
// account_information, demo-poll allowed both, and the delegate client
// Agent. replace are further old, new pairs applied to the text. It
// returns the file's path.
func RARConfig(t testing.TB, base string, replace ...string) string {
	t.Helper()
	raw, err := os.ReadFile(base)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	accounts := filepath.Join(dir, "account_information.json")
	if err := os.WriteFile(accounts, []byte(AccountInformationSchema), 0o600); err != nil {
		t.Fatal(err)
	}
	payment := filepath.Join(RepoRoot(), "examples", "schemas", "payment_initiation.json")
	cfg := string(raw)
	pairs := append([]string{
		"clients:\n", "authorization_details:\n  types:\n" +
			"    payment_initiation:\n      schema_file: " + payment + "\n" +
			"    account_information:\n      schema_file: " + accounts + "\n" +
			"clients:\n" +
			"  - client_id: " + Agent.ID + "\n    client_name: " + AgentName + "\n    client_secret: " + Agent.Secret + "\n" +
			"    token_endpoint_auth_methods: [client_secret_basic]\n    backchannel_token_delivery_mode: poll\n" +
			"    acts_for_user: true\n    authorization_details_types: [payment_initiation, account_information]\n",
		"  - client_id: demo-poll\n", "  - client_id: demo-poll\n    authorization_details_types: [payment_initiation, account_information]\n",
	}, replace...)
	for i := 0; i+1 < len(pairs); i += 2 {
		next := strings.Replace(cfg, pairs[i], pairs[i+1], 1)
		if next == cfg {
			t.Fatalf("RARConfig: %q is not in the configuration", pairs[i])
		}
		cfg = next
	}
	path := filepath.Join(dir, "rar.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
