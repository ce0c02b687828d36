// Package authzdetails parses and checks the authorization_details
// parameter of Rich Authorization Requests (RFC 9396): a JSON array of
// objects, each with a string type, bounded in size and count, each type
// allowed per client and its element validated against the JSON Schema the
// operator configured for it. It knows nothing of CIBA: its callers map its
// *Error to the wire's invalid_authorization_details (RFC 9396 §5).
package authzdetails

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

// Default bounds of a list, used when Limits leaves a field zero.
const (
	// DefaultMaxBytes bounds the parameter's value, in bytes as received.
	DefaultMaxBytes = 8 << 10
	// DefaultMaxCount bounds the number of elements.
	DefaultMaxCount = 10
)

// Limits bound a list. A zero field takes its default.
type Limits struct {
	// MaxBytes bounds the value as received (the form value, or the
	// request-object claim as JSON text).
	MaxBytes int
	// MaxCount bounds the number of elements.
	MaxCount int
}

// withDefaults returns l with each zero field set to its default.
func (l Limits) withDefaults() Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	if l.MaxCount <= 0 {
		l.MaxCount = DefaultMaxCount
	}
	return l
}

// Detail is one element of authorization_details: a JSON object as decoded
// with its numbers kept as written (json.Number), nested objects as
// map[string]any and arrays as []any.
type Detail map[string]any

// Type returns the element's type (RFC 9396 §2).
func (d Detail) Type() string {
	t, _ := d["type"].(string)
	return t
}

// List is a parsed authorization_details value, in the client's order.
type List []Detail

// Types returns the distinct types of l, in order of first appearance.
func (l List) Types() []string {
	var out []string
	for _, d := range l {
		if t := d.Type(); !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}

// Canonical returns l as canonical JSON text: object members sorted by
// name, no insignificant white space, strings escaped minimally (no HTML
// escaping), numbers as the client wrote them. Two lists that differ only in
// member order or white space have the same canonical form. An empty or nil
// list is "[]".
func (l List) Canonical() []byte {
	if len(l) == 0 {
		return []byte("[]")
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode([]Detail(l)); err != nil {
		// A List holds only what Parse decoded from JSON text, which
		// always encodes again.
		panic(fmt.Sprintf("authzdetails: encode a parsed list: %v", err))
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// Digest returns the SHA-256 of l's canonical form, base64url without
// padding: what a decision records as "the details the user approved".
func (l List) Digest() string {
	return DigestOf(l.Canonical())
}

// DigestOf returns the SHA-256 of canonical, a list's canonical JSON as
// Canonical wrote it (and a store kept it), base64url without padding:
// List.Digest without decoding the list again.
func DigestOf(canonical []byte) string {
	sum := sha256.Sum256(canonical)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// FromJSON decodes a list that was stored as JSON text by Canonical (or
// validated by Parse before): it checks nothing but the syntax. Empty text
// is a nil list.
func FromJSON(b []byte) (List, error) {
	if len(b) == 0 {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var l List
	if err := dec.Decode(&l); err != nil {
		return nil, fmt.Errorf("decode authorization_details: %w", err)
	}
	return l, nil
}

// Parse decodes value, the authorization_details parameter as received: a
// JSON array of objects, or a JSON string whose content is such an array
// (Auth0-style clients send it that way). A request object's claim is
// passed as its JSON text. It checks the syntax and the bounds, and that
// every element is an object with a non-empty string type and well-formed
// common fields (RFC 9396 §2.2); Check then applies the client's allowlist
// and the schemas. "" is refused: a caller that has no parameter does not
// call Parse.
func Parse(value string, lim Limits) (List, error) {
	lim = lim.withDefaults()
	if len(value) > lim.MaxBytes {
		return nil, listErr("is %d bytes; at most %d are allowed", len(value), lim.MaxBytes)
	}
	text := []byte(strings.TrimSpace(value))
	if len(text) == 0 {
		return nil, listErr("is empty; send a JSON array of objects")
	}
	if text[0] == '"' {
		var inner string
		if err := json.Unmarshal(text, &inner); err != nil || !utf8.ValidString(inner) {
			return nil, listErr("is a JSON string that does not decode; send a JSON array of objects")
		}
		text = []byte(strings.TrimSpace(inner))
	}
	if len(text) == 0 || text[0] != '[' {
		return nil, listErr("must be a JSON array of objects")
	}
	var raw []json.RawMessage
	if err := strictDecode(text, &raw); err != nil {
		return nil, listErr("is not valid JSON: %s", syntaxReason(err))
	}
	if len(raw) == 0 {
		return nil, listErr("is an empty array; send at least one object or leave the parameter out")
	}
	if len(raw) > lim.MaxCount {
		return nil, listErr("has %d elements; at most %d are allowed", len(raw), lim.MaxCount)
	}
	out := make(List, 0, len(raw))
	for i, r := range raw {
		if !jsontext.Value(r).IsValid() {
			return nil, &Error{Index: i, Reason: "has a member name twice or text that is not valid UTF-8"}
		}
		if t := bytes.TrimSpace(r); len(t) == 0 || t[0] != '{' {
			return nil, &Error{Index: i, Reason: "must be a JSON object"}
		}
		var d Detail
		if err := strictDecode(r, &d); err != nil {
			return nil, &Error{Index: i, Reason: "is not a valid JSON object"}
		}
		if err := checkCommon(i, d); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// errTrailing is strictDecode's error for text after the value.
var errTrailing = errors.New("text after the value")

// strictDecode decodes b into v with numbers as json.Number, refusing text
// after the value.
func strictDecode(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errTrailing
	}
	if _, err := dec.Token(); err == nil {
		return errTrailing
	}
	return nil
}

// syntaxReason says what is wrong with the JSON text, without quoting it.
func syntaxReason(err error) string {
	var se *json.SyntaxError
	switch {
	case errors.Is(err, errTrailing):
		return "there is text after the array"
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	case strings.Contains(err.Error(), "cannot unmarshal"):
		return "it is not an array"
	default:
		return "it ends early"
	}
}

// checkCommon checks the element's type and the common data fields of RFC
// 9396 §2.2 every type shares.
func checkCommon(i int, d Detail) *Error {
	t, present := d["type"]
	if !present {
		return &Error{Index: i, Field: "type", Reason: "is missing; every element needs a string type"}
	}
	ts, ok := t.(string)
	if !ok {
		return &Error{Index: i, Field: "type", Reason: "must be a string"}
	}
	if ts == "" {
		return &Error{Index: i, Field: "type", Reason: "must not be empty"}
	}
	// The common data fields that are arrays of strings.
	for _, f := range []string{"locations", "actions", "datatypes", "privileges"} {
		v, present := d[f]
		if !present {
			continue
		}
		arr, ok := v.([]any)
		if !ok {
			return &Error{Index: i, Field: f, Reason: "must be an array of strings"}
		}
		for _, e := range arr {
			if _, ok := e.(string); !ok {
				return &Error{Index: i, Field: f, Reason: "must be an array of strings"}
			}
		}
	}
	if v, present := d["identifier"]; present {
		if _, ok := v.(string); !ok {
			return &Error{Index: i, Field: "identifier", Reason: "must be a string"}
		}
	}
	return nil
}
