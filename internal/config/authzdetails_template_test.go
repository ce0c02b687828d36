package config

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestAuthorizationDetailsTemplates: a type's template is read relative to
// the configuration, parsed and tried at load; one that does not parse,
// or names a field the page does not give it, is a problem at its path.
func TestAuthorizationDetailsTemplates(t *testing.T) {
	dir := schemaDir(t, map[string]string{
		"ok.json":  `{"type":"object"}`,
		"pay.html": `<p>Pay {{range .Amounts}}{{.Amount}} {{.Currency}}{{end}} to {{.Value.creditorName}}</p>`,
		"bad.html": `{{if}}`,
		"odd.html": `{{.Creditor}}`,
	})
	typ := func(tpl string) string {
		return "authorization_details:\n  types:\n    p:\n      schema_file: ok.json\n      template: " + tpl + "\n"
	}
	t.Run("a template is parsed and kept", func(t *testing.T) {
		c, err := parse([]byte(doc(map[string]string{"limits": typ("pay.html")})), filepath.Join(dir, "cibaproxy.yaml"), noEnv)
		if err != nil {
			t.Fatal(err)
		}
		a := c.AuthorizationDetails
		if a.Types["p"].Template != filepath.Join(dir, "pay.html") || !a.Templates.Has("p") {
			t.Errorf("template %q, parsed %v", a.Types["p"].Template, a.Templates.Has("p"))
		}
	})
	for _, tt := range []struct{ name, file, msg string }{
		{"a template that does not parse is refused", "bad.html", "template of type"},
		{"a template naming a field the page does not give is refused", "odd.html", "can't evaluate field Creditor"},
		{"a missing template is refused", "missing.html", "cannot read the template"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parse([]byte(doc(map[string]string{"limits": typ(tt.file)})), filepath.Join(dir, "cibaproxy.yaml"), noEnv)
			if err == nil || !strings.Contains(err.Error(), "authorization_details.types.p.template") || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("parse = %v; want a problem at authorization_details.types.p.template saying %q", err, tt.msg)
			}
		})
	}
}

// TestActsForUser: clients[].acts_for_user is accepted for a confidential
// client with the local upstream, and refused with an upstream that
// issues the tokens itself.
func TestActsForUser(t *testing.T) {
	cl := clients("client_id: agent\nclient_secret: s1\nbackchannel_token_delivery_mode: poll\nacts_for_user: true")
	c := mustParse(t, doc(map[string]string{"clients": cl}), noEnv)
	if !c.Clients[0].ActsForUser || !c.Clients[0].Checked.Metadata().ActsForUser {
		t.Fatal("acts_for_user not kept")
	}
	for _, u := range []string{UpstreamOIDC, UpstreamCIBA} {
		ps := problemsOf(t, doc(map[string]string{"clients": cl, "upstream": "upstream:\n  type: " + u}), noEnv)
		found := false
		for _, p := range ps {
			found = found || (p.Path == "clients[0].acts_for_user" && strings.Contains(p.Message, "local upstream only"))
		}
		if !found {
			t.Errorf("%s: no problem at clients[0].acts_for_user; got:\n%v", u, ps)
		}
	}
}
