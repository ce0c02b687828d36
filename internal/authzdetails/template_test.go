package authzdetails

import (
	"os"
	"strings"
	"testing"
)

func TestTemplates(t *testing.T) {
	const pay = `<p class="pay">Pay <strong>{{range .Amounts}}{{.Amount}} {{.Currency}}{{end}}</strong> to {{.Value.creditorName}}{{with .Value.missing}} ({{.}}){{end}}</p>`
	tpls, err := ParseTemplates(map[string][]byte{"payment_initiation": []byte(pay)})
	if err != nil {
		t.Fatal(err)
	}
	l, err := Parse(`[{"type":"payment_initiation","instructedAmount":{"amount":"50.00","currency":"EUR"},"creditorName":"<script>alert(1)</script> & Co"},{"type":"other","x":"y"}]`, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	t.Run("an element of a type with a template is rendered by it, its values escaped", func(t *testing.T) {
		html, ok, err := tpls.Render(l[0])
		if err != nil || !ok {
			t.Fatalf("Render = %v, %v", ok, err)
		}
		want := `<p class="pay">Pay <strong>50.00 EUR</strong> to &lt;script&gt;alert(1)&lt;/script&gt; &amp; Co</p>`
		if string(html) != want {
			t.Errorf("got  %s\nwant %s", html, want)
		}
	})
	t.Run("an element of a type without one is not rendered", func(t *testing.T) {
		if _, ok, err := tpls.Render(l[1]); ok || err != nil {
			t.Errorf("Render = %v, %v; want false, nil", ok, err)
		}
		if !tpls.Has("payment_initiation") || tpls.Has("other") {
			t.Error("Has")
		}
		var none *Templates
		if _, ok, _ := none.Render(l[0]); ok || none.Has("payment_initiation") {
			t.Error("nil Templates renders")
		}
	})
	for _, tc := range []struct{ name, text, msg string }{
		{"a syntax error is refused at start, naming the type", `{{if}}`, `type "t"`},
		{"a field the data does not have is refused at start", `{{.Creditor}}`, "can't evaluate field Creditor"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseTemplates(map[string][]byte{"t": []byte(tc.text)})
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("ParseTemplates = %v; want an error containing %q", err, tc.msg)
			}
		})
	}
	t.Run("a template that writes too much fails, so the page shows the default", func(t *testing.T) {
		// Nothing is written for an element holding only its type, so the
		// template passes the start.
		big, err := ParseTemplates(map[string][]byte{"payment_initiation": []byte(`{{range .Fields}}` + strings.Repeat("x", maxTemplateOutput+1) + `{{end}}`)})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok, err := big.Render(l[0]); !ok || err == nil {
			t.Errorf("Render = %v, %v; want true and an error", ok, err)
		}
	})
}

// TestExampleTemplate renders examples/templates/payment_initiation.html
// with the example of RFC 9396 §2.
func TestExampleTemplate(t *testing.T) {
	text, err := os.ReadFile("../../examples/templates/payment_initiation.html")
	if err != nil {
		t.Fatal(err)
	}
	tpls, err := ParseTemplates(map[string][]byte{"payment_initiation": text})
	if err != nil {
		t.Fatal(err)
	}
	l, err := Parse(`[{"type":"payment_initiation","actions":["initiate"],"instructedAmount":{"currency":"EUR","amount":"123.50"},
	 "creditorName":"Merchant A","creditorAccount":{"iban":"DE02100100109307118603"},"remittanceInformationUnstructured":"Ref Number Merchant"}]`, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	html, ok, err := tpls.Render(l[0])
	if err != nil || !ok {
		t.Fatalf("Render = %v, %v", ok, err)
	}
	want := "<p>Pay <strong>123.50 EUR</strong> to <strong>Merchant A</strong> (account DE02100100109307118603).</p>\n<p>Reference: Ref Number Merchant</p>\n"
	if string(html) != want {
		t.Errorf("got\n%q\nwant\n%q", html, want)
	}
}

// TestLive: a Live gives the Set last stored, the registry and the
// templates together; a nil one holds none.
func TestLive(t *testing.T) {
	var none *Live
	if none.Registry() != nil || none.Templates() != nil || none.Registry().Supports("a") {
		t.Error("a nil Live holds something")
	}
	r1, err := Compile(Schemas{"a": []byte(`{}`)}, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	r2, err := Compile(Schemas{"b": []byte(`{}`)}, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	tpl, err := ParseTemplates(map[string][]byte{"b": []byte(`<p>{{.Type}}</p>`)})
	if err != nil {
		t.Fatal(err)
	}
	l := NewLive(Set{Registry: r1})
	if !l.Registry().Supports("a") || l.Templates().Has("b") {
		t.Fatalf("the first set is not in force")
	}
	l.Store(Set{Registry: r2, Templates: tpl})
	if s := l.Load(); s.Registry.Supports("a") || !s.Registry.Supports("b") || !s.Templates.Has("b") {
		t.Errorf("the second set is not in force whole")
	}
}
