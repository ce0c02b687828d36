package authzdetails

import (
	"errors"
	"os"
	"strings"
	"testing"
)

const payment = `{"type":"payment_initiation","actions":["initiate"],"locations":["https://bank.example/payments"],` +
	`"instructedAmount":{"currency":"EUR","amount":"123.50"},"creditorName":"Merchant A",` +
	`"creditorAccount":{"iban":"DE02100100109307118603"}}`

func testRegistry(t *testing.T, lim Limits) *Registry {
	t.Helper()
	doc, err := os.ReadFile("testdata/payment.json")
	if err != nil {
		t.Fatal(err)
	}
	r, err := Compile(Schemas{
		"payment_initiation":  doc,
		"account_information": []byte(`{"type":"object","properties":{"accounts":{"type":"array","maxItems":3}}}`),
	}, lim)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return r
}

func TestParseAccepts(t *testing.T) {
	r := testRegistry(t, Limits{})
	allowed := []string{"payment_initiation", "account_information"}
	for name, value := range map[string]string{
		"array":             "[" + payment + "]",
		"json string":       jsonString("[" + payment + "]"),
		"white space":       " \n[ " + payment + " ,\t{\"type\":\"account_information\"} ]\n",
		"string of spaced":  jsonString(" [" + payment + "] "),
		"unknown members":   `[{"type":"account_information","x-note":{"deep":[1,2.50,true,null]}}]`,
		"common fields":     `[{"type":"account_information","actions":["read"],"datatypes":["balances"],"identifier":"acc-1","privileges":["p"]}]`,
		"unicode in values": `[{"type":"account_information","label":"Café ☕"}]`,
	} {
		t.Run(name, func(t *testing.T) {
			l, err := r.ParseAndCheck(value, allowed)
			if err != nil {
				t.Fatalf("ParseAndCheck: %v", err)
			}
			if len(l) == 0 || l[0].Type() == "" {
				t.Fatalf("list %v", l)
			}
		})
	}
}

func jsonString(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\t", `\t`).Replace(s) + `"`
}

// TestParseRefuses names every refusal: the element, the field and the
// reason the description carries.
func TestParseRefuses(t *testing.T) {
	r := testRegistry(t, Limits{MaxBytes: 2048, MaxCount: 3})
	allowed := []string{"payment_initiation", "account_information", "not_configured"}
	ai := `{"type":"account_information"}`
	for _, tc := range []struct {
		name, value string
		index       int
		field       string
		reason      string
	}{
		{"too many bytes", "[" + ai + strings.Repeat(" ", 2048) + "]", -1, "", "is 2080 bytes; at most 2048"},
		{"too many elements", "[" + strings.Repeat(ai+",", 3) + ai + "]", -1, "", "has 4 elements; at most 3"},
		{"empty", "  ", -1, "", "is empty"},
		{"empty array", "[]", -1, "", "is an empty array"},
		{"object not array", ai, -1, "", "must be a JSON array"},
		{"number", "12", -1, "", "must be a JSON array"},
		{"string of object", jsonString(ai), -1, "", "must be a JSON array"},
		{"string of string", jsonString(jsonString("[" + ai + "]")), -1, "", "must be a JSON array"},
		{"bad string", `"[\x"`, -1, "", "JSON string that does not decode"},
		{"syntax", `[{"type":"a",}]`, -1, "", "not valid JSON: syntax error"},
		{"truncated", `[{"type":"a"}`, -1, "", "not valid JSON"},
		{"trailing text", `[` + ai + `] x`, -1, "", "text after the array"},
		{"two arrays", `[` + ai + `][` + ai + `]`, -1, "", "text after the array"},
		{"element not object", `[` + ai + `, "x"]`, 1, "", "must be a JSON object"},
		{"element null", `[null]`, 0, "", "must be a JSON object"},
		{"duplicate member", `[{"type":"account_information","type":"payment_initiation"}]`, 0, "", "member name twice"},
		{"invalid utf-8", "[{\"type\":\"account_information\",\"x\":\"\xff\"}]", 0, "", "not valid UTF-8"},
		{"type missing", `[{"actions":["read"]}]`, 0, "type", "is missing"},
		{"type number", `[{"type":7}]`, 0, "type", "must be a string"},
		{"type empty", `[{"type":""}]`, 0, "type", "must not be empty"},
		{"actions not array", `[{"type":"account_information","actions":"read"}]`, 0, "actions", "array of strings"},
		{"locations of numbers", `[{"type":"account_information","locations":[1]}]`, 0, "locations", "array of strings"},
		{"datatypes object", `[{"type":"account_information","datatypes":{}}]`, 0, "datatypes", "array of strings"},
		{"privileges of null", `[{"type":"account_information","privileges":[null]}]`, 0, "privileges", "array of strings"},
		{"identifier number", `[{"type":"account_information","identifier":1}]`, 0, "identifier", "must be a string"},
		{"type not allowed", `[` + ai + `,{"type":"other"}]`, 1, "type", "'other' is not allowed for this client"},
		{"type not supported", `[{"type":"not_configured"}]`, 0, "type", "'not_configured' is not supported"},
		{"schema required", `[{"type":"payment_initiation","creditorName":"A"}]`, 0, "", "does not match the schema: missing property 'instructedAmount'"},
		{"schema nested pattern", `[` + strings.Replace(payment, `"EUR"`, `"euro"`, 1) + `]`, 0, "instructedAmount/currency", "does not match the pattern ^[A-Z]{3}$"},
		{"schema type", `[` + strings.Replace(payment, `"Merchant A"`, `5`, 1) + `]`, 0, "creditorName", "does not match the schema: got number, want string"},
		{"schema additional", `[` + strings.Replace(payment, `"amount":"123.50"`, `"amount":"1","fee":"2"`, 1) + `]`, 0, "instructedAmount", "additional properties 'fee' not allowed"},
		{"schema enum", `[` + strings.Replace(payment, `["initiate"]`, `["steal"]`, 1) + `]`, 0, "actions/0", "does not match the schema"},
		{"schema format", `[` + strings.Replace(payment, `"https://bank.example/payments"`, `"not a uri"`, 1) + `]`, 0, "locations/0", "is not a valid uri"},
		{"schema max items", `[{"type":"account_information","accounts":[1,2,3,4]}]`, 0, "accounts", "maxItems: got 4, want 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := r.ParseAndCheck(tc.value, allowed)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("ParseAndCheck = %v, want an *Error", err)
			}
			if e.Index != tc.index || e.Field != tc.field {
				t.Errorf("at [%d].%q, want [%d].%q (%v)", e.Index, e.Field, tc.index, tc.field, e)
			}
			if !strings.Contains(e.Reason, tc.reason) {
				t.Errorf("reason %q, want it to contain %q", e.Reason, tc.reason)
			}
			d := e.Description()
			for _, c := range []byte(d) {
				if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
					t.Fatalf("description %q has %q, not allowed by RFC 6749 §5.2", d, c)
				}
			}
			if !strings.HasPrefix(d, "authorization_details") {
				t.Errorf("description %q", d)
			}
		})
	}
}

func TestDescription(t *testing.T) {
	for _, tc := range []struct {
		e    Error
		want string
	}{
		{Error{Index: -1, Reason: "is empty"}, "authorization_details is empty"},
		{Error{Index: 2, Field: "type", Reason: "is missing"}, "authorization_details[2].type is missing"},
		{Error{Index: 0, Field: "a/b", Reason: `has "é"\`}, "authorization_details[0].a/b has ?????"},
		{Error{Index: 0, Reason: strings.Repeat("x", 400)}, "authorization_details[0] " + strings.Repeat("x", 297-len("authorization_details[0] ")) + "..."},
	} {
		if got := tc.e.Description(); got != tc.want {
			t.Errorf("Description = %q, want %q", got, tc.want)
		}
	}
}

// TestNoValueEchoed: a description names the field, not what the client
// put in it.
func TestNoValueEchoed(t *testing.T) {
	r := testRegistry(t, Limits{})
	v := `[` + strings.Replace(payment, `"EUR"`, `"SECRETVALUE"`, 1) + `]`
	_, err := r.ParseAndCheck(v, []string{"payment_initiation"})
	if err == nil || strings.Contains(err.Error(), "SECRETVALUE") {
		t.Fatalf("error %v", err)
	}
	v = `[` + strings.Replace(payment, `"https://bank.example/payments"`, `"SECRET VALUE"`, 1) + `]`
	_, err = r.ParseAndCheck(v, []string{"payment_initiation"})
	if err == nil || strings.Contains(err.Error(), "SECRET") {
		t.Fatalf("error %v", err)
	}
}

func TestCompileRefuses(t *testing.T) {
	for name, docs := range map[string]Schemas{
		"not json":      {"a": []byte(`{`)},
		"bad keyword":   {"a": []byte(`{"type":"nonsense"}`)},
		"external ref":  {"a": []byte(`{"$ref":"https://schemas.example/x.json"}`)},
		"file ref":      {"a": []byte(`{"$ref":"file:///etc/passwd"}`)},
		"empty type":    {"": []byte(`{}`)},
		"bad pattern":   {"a": []byte(`{"pattern":"("}`)},
		"bad min items": {"a": []byte(`{"minItems":-1}`)},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Compile(docs, Limits{}); err == nil {
				t.Fatal("Compile succeeded")
			}
		})
	}
}

func TestCompileLocalRef(t *testing.T) {
	r, err := Compile(Schemas{"a": []byte(`{"$defs":{"n":{"type":"string"}},"properties":{"name":{"$ref":"#/$defs/n"}}}`)}, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.ParseAndCheck(`[{"type":"a","name":1}]`, []string{"a"}); err == nil {
		t.Fatal("local $ref not applied")
	}
	if _, err := r.ParseAndCheck(`[{"type":"a","name":"x"}]`, []string{"a"}); err != nil {
		t.Fatal(err)
	}
}

func TestRegistry(t *testing.T) {
	var nilR *Registry
	if nilR.Types() != nil || nilR.Supports("a") || nilR.Limits() != (Limits{DefaultMaxBytes, DefaultMaxCount}) {
		t.Fatal("nil registry")
	}
	if err := nilR.Check(List{{"type": "a"}}, []string{"a"}); err == nil {
		t.Fatal("nil registry accepted a type")
	}
	r := testRegistry(t, Limits{MaxCount: 4})
	if got := strings.Join(r.Types(), ","); got != "account_information,payment_initiation" {
		t.Errorf("Types = %s", got)
	}
	if r.Limits() != (Limits{MaxBytes: DefaultMaxBytes, MaxCount: 4}) {
		t.Errorf("Limits = %+v", r.Limits())
	}
}

func TestCanonicalAndDigest(t *testing.T) {
	a, err := Parse(`[{"type":"t","b":1.50,"a":{"y":"<&>","x":[2,1]}}]`, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse(jsonString(" [ { \"a\" : { \"x\":[2, 1], \"y\":\"\\u003c&>\" }, \"b\":1.50 , \"type\":\"t\" } ] "), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	want := `[{"a":{"x":[2,1],"y":"<&>"},"b":1.50,"type":"t"}]`
	if got := string(a.Canonical()); got != want {
		t.Errorf("Canonical = %s, want %s", got, want)
	}
	if a.Digest() != b.Digest() {
		t.Error("digests differ for the same list")
	}
	c, _ := Parse(`[{"type":"t","b":1.5,"a":{"y":"<&>","x":[2,1]}}]`, Limits{})
	if c.Digest() == a.Digest() {
		t.Error("a changed number has the same digest")
	}
	d, _ := Parse(`[{"type":"t","a":{"y":"<&>","x":[1,2]},"b":1.50}]`, Limits{})
	if d.Digest() == a.Digest() {
		t.Error("a reordered array has the same digest")
	}
	if len(a.Digest()) != 43 {
		t.Errorf("digest %q", a.Digest())
	}
	if string(List(nil).Canonical()) != "[]" {
		t.Error("nil list")
	}
	back, err := FromJSON(a.Canonical())
	if err != nil || back.Digest() != a.Digest() {
		t.Fatalf("FromJSON: %v", err)
	}
	if l, err := FromJSON(nil); l != nil || err != nil {
		t.Fatal("FromJSON(nil)")
	}
	if _, err := FromJSON([]byte("{")); err == nil {
		t.Fatal("FromJSON of bad text")
	}
	if got := a.Types(); len(got) != 1 || got[0] != "t" {
		t.Errorf("Types = %v", got)
	}
}
