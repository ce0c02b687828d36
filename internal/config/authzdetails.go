package config

import (
	"sort"

	"github.com/cibaproxy/cibaproxy/internal/authzdetails"
	"github.com/cibaproxy/cibaproxy/internal/clientmeta"
)

// Bounds of authorization_details.max_bytes and max_count.
const (
	maxAuthzDetailsBytes = 16 << 10 // the form's bound of one parameter (httpapi)
	maxAuthzDetailsCount = 100
)

// AuthorizationDetails configures Rich Authorization Requests (RFC 9396):
// the authorization_details types the server accepts at bc-authorize, each
// with the JSON Schema its elements must match, and the bounds of a list.
// A client sends a type only if its clients[].authorization_details_types
// lists it. Off (no types) by default: authorization_details is refused.
type AuthorizationDetails struct {
	// Types maps each supported type to its schema. Discovery lists the
	// types as authorization_details_types_supported.
	Types map[string]AuthorizationDetailsType `yaml:"types"`

	// MaxBytes bounds the parameter as received, in bytes. Default 8192
	// ([authzdetails.DefaultMaxBytes]); at most 16384 (the largest form parameter accepted).
	MaxBytes int `yaml:"max_bytes"`

	// MaxCount bounds the number of elements. Default 10
	// ([authzdetails.DefaultMaxCount]); at most 100.
	MaxCount int `yaml:"max_count"`

	// Registry holds the types with their compiled schemas. Set by
	// [Load]; nil without types.
	Registry *authzdetails.Registry `yaml:"-"`

	// Templates holds the types' approval-page templates, parsed and
	// tried. Set by [Load]; nil when no type has one.
	Templates *authzdetails.Templates `yaml:"-"`
}

// AuthorizationDetailsType is one supported authorization_details type.
type AuthorizationDetailsType struct {
	// SchemaFile is a JSON Schema (draft 2020-12 unless its $schema says
	// otherwise) every element of this type must match, type member
	// included. Required. Relative to the configuration file. The schema
	// may use $ref only within itself: cibaproxy fetches no other
	// document. It is compiled at start and again on each reload
	// (SIGHUP).
	SchemaFile string `yaml:"schema_file"`

	// Template is an html/template file that renders one element of this
	// type on the approval page, in place of the default rendering (a
	// definition list of every member); the page still offers every
	// member under "All details". It is executed with the element as
	// .Type, .Actions, .Locations, .Amounts (.Name, .Amount, .Currency),
	// .Fields (.Name, .Value) and the element itself as .Value
	// ({{.Value.creditorName}}). html/template escapes every value for
	// its context. Optional; relative to the configuration file; parsed
	// and tried at start and again on each reload (SIGHUP).
	Template string `yaml:"template"`
}

// TypeNames returns the configured types in order.
func (a *AuthorizationDetails) TypeNames() []string {
	out := make([]string, 0, len(a.Types))
	for t := range a.Types {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// authzDetailsDefaults fills in the bounds left out and makes the schema
// files relative to the configuration's directory.
func (v *validator) authzDetailsDefaults(a *AuthorizationDetails) {
	if !v.src.set["authorization_details.max_bytes"] {
		a.MaxBytes = authzdetails.DefaultMaxBytes
	}
	if !v.src.set["authorization_details.max_count"] {
		a.MaxCount = authzdetails.DefaultMaxCount
	}
	for t, spec := range a.Types {
		spec.SchemaFile = v.resolve(spec.SchemaFile)
		if spec.Template != "" {
			spec.Template = v.resolve(spec.Template)
		}
		a.Types[t] = spec
	}
}

// checkAuthzDetails checks authorization_details, reads and compiles each
// type's schema, and sets a.Registry when every schema compiled.
func (v *validator) checkAuthzDetails(c *Config) {
	const at = "authorization_details"
	a := &c.AuthorizationDetails
	// Every upstream carries them: the local issuer into its tokens, the
	// ciba upstream to the provider's bc-authorize, the oidc upstream into
	// the provider's authorization request (refused at bc-authorize when
	// the provider's discovery does not list the type).
	if a.MaxBytes < 64 || a.MaxBytes > maxAuthzDetailsBytes {
		v.fail(at+".max_bytes", "must be from 64 to %d bytes, got %d", maxAuthzDetailsBytes, a.MaxBytes)
	}
	if a.MaxCount < 1 || a.MaxCount > maxAuthzDetailsCount {
		v.fail(at+".max_count", "must be from 1 to %d, got %d", maxAuthzDetailsCount, a.MaxCount)
	}
	docs := make(authzdetails.Schemas, len(a.Types))
	ok := true
	for _, t := range a.TypeNames() {
		tp := joinKey(at+".types", t)
		if msg := clientmeta.CheckAuthzDetailsType(t); msg != "" {
			v.fail(tp, "%s", msg)
			ok = false
			continue
		}
		file := a.Types[t].SchemaFile
		if file == "" {
			v.fail(joinKey(tp, "schema_file"), "required: the JSON Schema the type's elements must match")
			ok = false
			continue
		}
		data, err := readRegularFile(file)
		if err != nil {
			v.fail(joinKey(tp, "schema_file"), "cannot read the schema: %v", err)
			ok = false
			continue
		}
		// Compile each schema alone so a failure names its file.
		if _, err := authzdetails.Compile(authzdetails.Schemas{t: data}, authzdetails.Limits{}); err != nil {
			v.fail(joinKey(tp, "schema_file"), "%s: %v", file, err)
			ok = false
			continue
		}
		docs[t] = data
	}
	v.checkAuthzTemplates(a)
	if !ok || len(docs) == 0 {
		return
	}
	r, err := authzdetails.Compile(docs, authzdetails.Limits{MaxBytes: a.MaxBytes, MaxCount: a.MaxCount})
	if err != nil {
		v.fail(at+".types", "%v", err)
		return
	}
	a.Registry = r
}

// maxTemplateBytes bounds a type's template file.
const maxTemplateBytes = 64 << 10

// checkAuthzTemplates reads and parses the types' templates, and sets
// a.Templates when every one parsed.
func (v *validator) checkAuthzTemplates(a *AuthorizationDetails) {
	const at = "authorization_details.types"
	texts := map[string][]byte{}
	ok := true
	for _, t := range a.TypeNames() {
		file := a.Types[t].Template
		if file == "" {
			continue
		}
		p := joinKey(joinKey(at, t), "template")
		data, err := readRegularFile(file)
		switch {
		case err != nil:
			v.fail(p, "cannot read the template: %v", err)
			ok = false
			continue
		case len(data) > maxTemplateBytes:
			v.fail(p, "is %d bytes; at most %d are allowed", len(data), maxTemplateBytes)
			ok = false
			continue
		}
		// Parse each alone so a failure names its file.
		if _, err := authzdetails.ParseTemplates(map[string][]byte{t: data}); err != nil {
			v.fail(p, "%s: %v", file, err)
			ok = false
			continue
		}
		texts[t] = data
	}
	if !ok || len(texts) == 0 {
		return
	}
	tpls, err := authzdetails.ParseTemplates(texts)
	if err != nil {
		v.fail(at, "%v", err)
		return
	}
	a.Templates = tpls
}
