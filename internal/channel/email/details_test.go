package email

import (
	"strings"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// TestMessageCarriesTheDetails: the built-in message of a delegate's
// request says "<client> acting on your behalf asks to …" and lists every
// authorization_details element readably, amounts with their currency;
// the templates get the details too.
func TestMessageCarriesTheDetails(t *testing.T) {
	s, pool := tlsSink(t, false, 0)
	ch, _ := newChannel(t, config(s, pool, TLSStartTLS))
	r := request("alice@example.com")
	r.Actor = "bank-app"
	r.AuthzDetails = `[{"actions":["initiate"],"creditorName":"ACME\r\nBcc: x","instructedAmount":{"amount":"50.00","currency":"EUR"},"type":"payment_initiation"},{"accounts":["DE1"],"type":"account_information"}]`
	ch.now = func() time.Time { return r.ExpiresAt.Add(-5 * time.Minute) }
	if err := ch.Send(t.Context(), r, &ciba.Client{ID: "bank-app", Name: "Shopping Agent"}, notice()); err != nil {
		t.Fatal(err)
	}
	m, err := s.WaitMessage(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := strings.ReplaceAll(`Shopping Agent acting on your behalf asks to do what is listed below.

Check that Shopping Agent shows you this message:

    Code 7Q4X

To approve:

1. payment_initiation
   instructedAmount: 50.00 EUR
   actions: initiate
   creditorName: ACME  Bcc: x

2. account_information
   accounts: DE1

It asks for:`, "\n", "\r\n")
	if !strings.HasPrefix(m.Body, want) {
		t.Errorf("body:\n%s\nwant it to start:\n%s", m.Body, want)
	}
	if m.Header.Get("Bcc") != "" {
		t.Error("a detail added a header")
	}
}
