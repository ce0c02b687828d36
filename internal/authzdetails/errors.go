package authzdetails

import (
	"fmt"
	"strconv"
)

// Code is the error code of RFC 9396 §5 for a request whose
// authorization_details are refused.
const Code = "invalid_authorization_details"

// Error is why an authorization_details value was refused. Its message names
// the element and the field but quotes no value the client sent beyond a
// type name, so it fits an error_description (RFC 6749 §5.2: ASCII only,
// which Description ensures).
type Error struct {
	// Index is the element's position, from 0; -1 when the list as a whole
	// is refused.
	Index int
	// Field is the member of the element at fault, as a JSON pointer below
	// the element without the leading slash ("type", "amount/currency");
	// "" for the element as a whole.
	Field string
	// Reason says what is wrong, as the end of a sentence whose subject is
	// the element or the field.
	Reason string
}

// listErr returns an *Error about the list as a whole.
func listErr(format string, args ...any) *Error {
	return &Error{Index: -1, Reason: fmt.Sprintf(format, args...)}
}

// Error returns the description: "authorization_details[1].type is
// missing; ...".
func (e *Error) Error() string {
	return e.Description()
}

// Description returns the message for error_description, restricted to
// the characters RFC 6749 §5.2 allows (printable ASCII but '"' and '\').
func (e *Error) Description() string {
	s := "authorization_details"
	if e.Index >= 0 {
		s += "[" + strconv.Itoa(e.Index) + "]"
	}
	if e.Field != "" {
		s += "." + e.Field
	}
	return asciiDescription(s + " " + e.Reason)
}

// asciiDescription replaces each character RFC 6749 §5.2 does not allow in
// an error_description with '?', and bounds the text at 300 bytes.
func asciiDescription(s string) string {
	b := []byte(s)
	out := b[:0]
	for _, c := range b {
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			c = '?'
		}
		out = append(out, c)
	}
	if len(out) > 300 {
		out = append(out[:297], "..."...)
	}
	return string(out)
}
