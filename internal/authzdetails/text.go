package authzdetails

import (
	"strconv"
	"strings"
	"unicode"
)

// Text returns the list as plain text for a message a user reads (an
// e-mail, a text message): one block per element, its type first, then
// its amounts with their currency, actions, locations and every other
// member, one per line:
//
//  1. payment_initiation
//     instructedAmount: 50.00 EUR
//     creditorName: ACME
//
// Control characters in what the client sent (line breaks above all) are
// shown as spaces, so a value cannot fake a line of its own.
func (l List) Text() string {
	var b strings.Builder
	for i, v := range l.Views() {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(strconv.Itoa(i+1) + ". " + oneLine(v.Type) + "\n")
		line := func(name, value string) {
			b.WriteString("   " + oneLine(name) + ": " + oneLine(value) + "\n")
		}
		for _, a := range v.Amounts {
			line(a.Name, a.Amount+" "+a.Currency)
		}
		if v.Actions != "" {
			line("actions", v.Actions)
		}
		if v.Locations != "" {
			line("locations", v.Locations)
		}
		for _, f := range v.Fields {
			line(f.Name, f.Value)
		}
	}
	return b.String()
}

// oneLine replaces control characters (and the Unicode line and paragraph
// separators) with spaces.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, s)
}
