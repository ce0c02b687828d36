package authzdetails

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// View is one element as a page shows it: its type, the common fields of
// RFC 9396 §2.2 that are lists, the amounts it carries, and every other
// member as a name and a text. Values are plain text, for an HTML
// template to escape.
type View struct {
	// Type is the element's type.
	Type string
	// Actions and Locations are those common fields, joined with ", ";
	// "" when absent.
	Actions, Locations string
	// Amounts are the members that are an amount: an object with a
	// currency and an amount (or value), in member-name order.
	Amounts []Amount
	// Fields are the other members, objects flattened to "a.b" names,
	// in name order.
	Fields []Field
}

// Amount is a monetary amount an element carries.
type Amount struct {
	// Name is the member's name ("instructedAmount").
	Name string
	// Amount is the amount as the client wrote it; Currency its currency.
	Amount, Currency string
}

// Field is a member of an element, as text.
type Field struct {
	Name, Value string
}

// maxViewDepth bounds how deep objects are flattened; deeper values are
// shown as JSON text.
const maxViewDepth = 4

// Views returns the elements of l as pages show them.
func (l List) Views() []View {
	out := make([]View, 0, len(l))
	for _, d := range l {
		out = append(out, d.View())
	}
	return out
}

// View returns d as a page shows it.
func (d Detail) View() View {
	v := View{Type: d.Type()}
	for _, name := range sortedNames(d) {
		val := d[name]
		switch name {
		case "type":
			continue
		case "actions":
			v.Actions = joinText(val)
			continue
		case "locations":
			v.Locations = joinText(val)
			continue
		}
		if a, ok := amountOf(name, val); ok {
			v.Amounts = append(v.Amounts, a)
			continue
		}
		v.Fields = appendFields(v.Fields, name, val, 1)
	}
	return v
}

// amountOf reports whether val is an amount: an object of two members,
// currency and amount (or value), each a string or a number.
func amountOf(name string, val any) (Amount, bool) {
	m, ok := val.(map[string]any)
	if !ok || len(m) != 2 {
		return Amount{}, false
	}
	cur, ok := m["currency"].(string)
	if !ok {
		return Amount{}, false
	}
	amt, present := m["amount"]
	if !present {
		amt = m["value"]
	}
	switch amt.(type) {
	case string, json.Number, float64:
		s, _ := scalarText(amt)
		return Amount{Name: name, Amount: s, Currency: cur}, true
	}
	return Amount{}, false
}

// appendFields appends val under name, flattening objects.
func appendFields(fs []Field, name string, val any, depth int) []Field {
	if m, ok := val.(map[string]any); ok && depth < maxViewDepth && len(m) > 0 {
		for _, k := range sortedNames(m) {
			if a, ok := amountOf(k, m[k]); ok {
				fs = append(fs, Field{Name: name + "." + k, Value: a.Amount + " " + a.Currency})
				continue
			}
			fs = appendFields(fs, name+"."+k, m[k], depth+1)
		}
		return fs
	}
	return append(fs, Field{Name: name, Value: text(val)})
}

// text shows val: a scalar as it is, a list of scalars joined with ", ",
// anything else as JSON text.
func text(val any) string {
	if s, ok := scalarText(val); ok {
		return s
	}
	if arr, ok := val.([]any); ok {
		if s := joinText(arr); s != "" || len(arr) == 0 {
			return s
		}
	}
	b, err := json.Marshal(val)
	if err != nil {
		return fmt.Sprint(val)
	}
	return string(b)
}

// joinText joins a list of scalars with ", "; "" when val is not one.
func joinText(val any) string {
	arr, ok := val.([]any)
	if !ok {
		return ""
	}
	parts := make([]string, 0, len(arr))
	for _, e := range arr {
		s, ok := scalarText(e)
		if !ok {
			return ""
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

// scalarText returns a string, number, boolean or null as text.
func scalarText(val any) (string, bool) {
	switch x := val.(type) {
	case string:
		return x, true
	case json.Number:
		return x.String(), true
	case float64:
		return fmt.Sprint(x), true
	case bool:
		return fmt.Sprint(x), true
	case nil:
		return "null", true
	}
	return "", false
}

// sortedNames returns the member names of m in order.
func sortedNames[M ~map[string]any](m M) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}
