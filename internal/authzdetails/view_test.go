package authzdetails

import (
	"reflect"
	"testing"
)

func TestViews(t *testing.T) {
	l, err := Parse(`[{"type":"payment_initiation","actions":["initiate","status"],"locations":["https://bank.example/pay"],
	  "instructedAmount":{"currency":"EUR","amount":"123.50"},"fee":{"currency":"EUR","value":0.5},
	  "creditorName":"Merchant A","creditorAccount":{"iban":"DE02100100109307118603","bic":"X"},
	  "tags":["a",1,true],"mixed":[{"a":1}],"note":null,
	  "deep":{"a":{"b":{"c":{"d":1}}}},"nested":{"limit":{"currency":"USD","amount":10}}},
	 {"type":"t2"}]`, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	got := l.Views()
	want := []View{{
		Type: "payment_initiation", Actions: "initiate, status", Locations: "https://bank.example/pay",
		Amounts: []Amount{{Name: "fee", Amount: "0.5", Currency: "EUR"}, {Name: "instructedAmount", Amount: "123.50", Currency: "EUR"}},
		Fields: []Field{
			{"creditorAccount.bic", "X"}, {"creditorAccount.iban", "DE02100100109307118603"},
			{"creditorName", "Merchant A"},
			{"deep.a.b.c", `{"d":1}`},
			{"mixed", `[{"a":1}]`},
			{"nested.limit", "10 USD"},
			{"note", "null"},
			{"tags", "a, 1, true"},
		},
	}, {Type: "t2"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Views =\n%+v\nwant\n%+v", got, want)
	}
}
