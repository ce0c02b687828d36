package authzdetails

import (
	"bytes"
	"fmt"
	"html/template"
)

// maxTemplateOutput bounds what one element's template may write, so that
// a template looping over a large value cannot make a page of megabytes.
const maxTemplateOutput = 64 << 10

// TemplateData is what an operator's template of a type is executed with:
// the element as pages show it (View: .Type, .Actions, .Locations,
// .Amounts, .Fields) and, as .Value, the element itself (numbers as the
// client wrote them), so that a template can pick members by name:
// {{.Value.creditorName}}.
type TemplateData struct {
	View
	// Value is the element as decoded.
	Value Detail
}

// Templates are the operator's html/template files of some types, each
// rendering one element of its type on the approval page in place of the
// default rendering. They are html/template: every value is escaped for
// its context, so an element cannot inject markup whatever it holds.
// The zero value and nil have none.
type Templates struct {
	byType map[string]*template.Template
}

// ParseTemplates parses texts, a template's text by type, and executes
// each once with an element holding only its type, so that a template
// that names a field TemplateData does not have fails now rather than on
// a user's page. The error names the type.
func ParseTemplates(texts map[string][]byte) (*Templates, error) {
	t := &Templates{byType: make(map[string]*template.Template, len(texts))}
	for typ, text := range texts {
		tpl, err := template.New(typ).Option("missingkey=zero").Parse(string(text))
		if err != nil {
			return nil, fmt.Errorf("template of type %q: %w", typ, err)
		}
		d := Detail{"type": typ}
		var buf bytes.Buffer
		if err := tpl.Execute(&buf, TemplateData{View: d.View(), Value: d}); err != nil {
			return nil, fmt.Errorf("template of type %q: executed with an element holding only its type: %w", typ, err)
		}
		t.byType[typ] = tpl
	}
	return t, nil
}

// Has reports whether typ has a template.
func (t *Templates) Has(typ string) bool {
	if t == nil {
		return false
	}
	_, ok := t.byType[typ]
	return ok
}

// Render returns d rendered by its type's template, and false when its type
// has none. An error (a template that fails on this element, or writes
// more than 64 KiB) leaves the caller to show the default rendering.
func (t *Templates) Render(d Detail) (template.HTML, bool, error) {
	if t == nil {
		return "", false, nil
	}
	tpl, ok := t.byType[d.Type()]
	if !ok {
		return "", false, nil
	}
	w := &limitedBuffer{max: maxTemplateOutput}
	if err := tpl.Execute(w, TemplateData{View: d.View(), Value: d}); err != nil {
		return "", true, fmt.Errorf("template of type %q: %w", d.Type(), err)
	}
	// html/template escaped every value for its context: the output is
	// the operator's markup with the element's text in it.
	return template.HTML(w.buf.String()), true, nil //nolint:gosec // the output of html/template
}

// errTooLong is the error of a template that writes too much.
var errTooLong = fmt.Errorf("writes more than %d bytes", maxTemplateOutput)

// limitedBuffer is a buffer that refuses to grow past max.
type limitedBuffer struct {
	buf bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.buf.Len()+len(p) > b.max {
		return 0, errTooLong
	}
	return b.buf.Write(p)
}
