package authzdetails

import "testing"

func TestText(t *testing.T) {
	l, err := Parse(`[{"type":"payment_initiation","instructedAmount":{"amount":"50.00","currency":"EUR"},"creditorName":"ACME\n   instructedAmount: 1 EUR","actions":["initiate"],"locations":["https://bank.example"]},{"type":"account_information","accounts":["DE1","DE2"]}]`, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	want := "1. payment_initiation\n" +
		"   instructedAmount: 50.00 EUR\n" +
		"   actions: initiate\n" +
		"   locations: https://bank.example\n" +
		"   creditorName: ACME    instructedAmount: 1 EUR\n" +
		"\n" +
		"2. account_information\n" +
		"   accounts: DE1, DE2\n"
	if got := l.Text(); got != want {
		t.Errorf("Text() =\n%s\nwant\n%s", got, want)
	}
}
