package authzdetails

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// Registry holds the types the server supports, each with its compiled JSON
// Schema, and the bounds of a list. It is built once when the configuration
// is loaded and is safe for concurrent use.
type Registry struct {
	schemas map[string]*jsonschema.Schema
	limits  Limits
}

// Schemas maps a type to its JSON Schema document (the bytes of the file
// the operator configured), for Compile.
type Schemas map[string][]byte

// schemaBase is the made-up location under which a type's schema is
// registered with the compiler; nothing is fetched from it.
const schemaBase = "urn:cibaproxy:authorization-details:"

// Compile compiles each type's schema and returns the Registry. A schema
// that does not parse or compile, or that refers ($ref) to anything outside
// itself, is an error naming the type: cibaproxy loads no schema from a
// file or the network on its own. A schema is compiled with draft 2020-12
// unless it names another in $schema; "format" is asserted.
func Compile(docs Schemas, lim Limits) (*Registry, error) {
	r := &Registry{schemas: make(map[string]*jsonschema.Schema, len(docs)), limits: lim.withDefaults()}
	for _, t := range sortedKeys(docs) {
		if t == "" {
			return nil, errors.New("authorization_details: a type name is empty")
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(docs[t]))
		if err != nil {
			return nil, fmt.Errorf("authorization_details type %q: the schema is not JSON: %w", t, err)
		}
		c := jsonschema.NewCompiler()
		c.DefaultDraft(jsonschema.Draft2020)
		c.AssertFormat()
		c.UseLoader(refuseLoader{})
		loc := schemaBase + t
		if err := c.AddResource(loc, doc); err != nil {
			return nil, fmt.Errorf("authorization_details type %q: add the schema: %w", t, err)
		}
		s, err := c.Compile(loc)
		if err != nil {
			return nil, fmt.Errorf("authorization_details type %q: compile the schema: %w", t, err)
		}
		r.schemas[t] = s
	}
	return r, nil
}

// refuseLoader loads nothing: a schema's $ref to another document fails at
// Compile instead of reaching a file or the network.
type refuseLoader struct{}

// Load refuses every location.
func (refuseLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("the schema refers to %s; only references within the schema are allowed", url)
}

// sortedKeys returns the keys of m in order.
func sortedKeys(m Schemas) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Limits returns the bounds Parse is given by ParseAndCheck.
func (r *Registry) Limits() Limits {
	if r == nil {
		return Limits{}.withDefaults()
	}
	return r.limits
}

// Types returns the supported types in order: discovery's
// authorization_details_types_supported. It is empty for a nil Registry.
func (r *Registry) Types() []string {
	if r == nil {
		return nil
	}
	out := make([]string, 0, len(r.schemas))
	for t := range r.schemas {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// Supports reports whether t is a supported type.
func (r *Registry) Supports(t string) bool {
	if r == nil {
		return false
	}
	_, ok := r.schemas[t]
	return ok
}

// ParseAndCheck parses value with the Registry's bounds (Parse) and checks
// the list against allowed, the client's types (Check).
func (r *Registry) ParseAndCheck(value string, allowed []string) (List, error) {
	l, err := Parse(value, r.Limits())
	if err != nil {
		return nil, err
	}
	if err := r.Check(l, allowed); err != nil {
		return nil, err
	}
	return l, nil
}

// Check refuses the first element whose type is not in allowed (the
// client's allowlist) or not supported by the Registry, or that its type's
// schema rejects; the *Error names the element and the field. A nil
// Registry supports no type.
func (r *Registry) Check(l List, allowed []string) error {
	for i, d := range l {
		t := d.Type()
		if !slices.Contains(allowed, t) {
			return &Error{Index: i, Field: "type", Reason: fmt.Sprintf("%s is not allowed for this client", typeName(t))}
		}
		if !r.Supports(t) {
			return &Error{Index: i, Field: "type", Reason: fmt.Sprintf("%s is not supported by this server", typeName(t))}
		}
		if err := r.schemas[t].Validate(map[string]any(d)); err != nil {
			var ve *jsonschema.ValidationError
			if !errors.As(err, &ve) {
				return &Error{Index: i, Reason: "could not be validated"}
			}
			field, reason := describe(ve)
			return &Error{Index: i, Field: field, Reason: reason}
		}
	}
	return nil
}

// typeName shows a client's type in a description: quoted with
// apostrophes, bounded; Description replaces what is not ASCII.
func typeName(t string) string {
	if len(t) > 64 {
		t = t[:64] + "..."
	}
	return "'" + t + "'"
}

// describe picks the first leaf of the validation error tree: the field as
// a JSON pointer without the leading slash, and the reason. The library's
// messages that would quote the value sent are worded here instead.
func describe(ve *jsonschema.ValidationError) (field, reason string) {
	for len(ve.Causes) > 0 {
		ve = ve.Causes[0]
	}
	field = strings.Join(ve.InstanceLocation, "/")
	switch k := ve.ErrorKind.(type) {
	case *kind.Pattern:
		return field, "does not match the pattern " + bounded(k.Want)
	case *kind.Format:
		return field, "is not a valid " + bounded(k.Want)
	default:
		return field, "does not match the schema: " + bounded(ve.ErrorKind.LocalizedString(message.NewPrinter(language.English)))
	}
}

// bounded shortens a message part to 160 bytes.
func bounded(s string) string {
	if len(s) > 160 {
		return s[:160] + "..."
	}
	return s
}
