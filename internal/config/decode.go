package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// maxSteps bounds the work of decoding one file, so that a small file
// whose aliases and merge keys multiply into an enormous tree (a "billion
// laughs") is refused instead of exhausting memory.
const maxSteps = 200_000

var (
	durationType = reflect.TypeFor[time.Duration]()
	rawJSONType  = reflect.TypeFor[json.RawMessage]()
	anyMapType   = reflect.TypeFor[map[string]any]()
	strMapType   = reflect.TypeFor[map[string]string]()
)

// parseYAML parses data into its single document node. Syntax errors are
// added to col and nil is returned.
func parseYAML(data []byte, src *source, col *collector) *yaml.Node {
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			col.addBad(src, "", 0, "the file is empty")
			return nil
		}
		line, msg := splitYAMLError(err)
		col.addBad(src, "", problemLine(data, line, msg), "invalid YAML: %s", msg)
		return nil
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		line := extra.Line
		if len(extra.Content) > 0 {
			line = extra.Content[0].Line
		}
		col.addLine(src, "", line, "the file holds more than one YAML document (\"---\"); only one is allowed")
	} else if !errors.Is(err, io.EOF) {
		line, msg := splitYAMLError(err)
		col.addBad(src, "", line, "invalid YAML: %s", msg)
	}
	return &doc
}

// problemScan bounds how many lines after the reported one problemLine
// looks at, and problemScanBytes the size of a file it looks into: each
// line costs a parse of the file up to it.
const (
	problemScan      = 200
	problemScanBytes = 1 << 20
)

// problemLine returns the line of the syntax error msg in data, which
// yaml.v3 reported at line: that is the line of the enclosing collection
// when it knows one (a mis-indented line 4 of a list starting on line 2 is
// reported at line 2). The problem is at the first line that, with all the
// lines before it, fails with the same message.
//
// Only the errors of block collections are looked at: in a flow ([…],
// {…}) or a quoted string, cutting the file short fails by itself.
func problemLine(data []byte, line int, msg string) int {
	if line <= 0 || len(data) > problemScanBytes || !strings.Contains(msg, "did not find expected key") && !strings.Contains(msg, "did not find expected '-' indicator") {
		return line
	}
	lines := strings.SplitAfter(string(data), "\n")
	for k := line; k <= len(lines) && k <= line+problemScan; k++ {
		var n yaml.Node
		err := yaml.Unmarshal([]byte(strings.Join(lines[:k], "")), &n)
		if err == nil {
			continue
		}
		if _, m := splitYAMLError(err); m == msg {
			return k
		}
	}
	return line
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// splitYAMLError takes the line number out of a yaml.v3 syntax error.
func splitYAMLError(err error) (int, string) {
	s := err.Error()
	if m := yamlLineRE.FindStringSubmatch(s); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n, m[2]
	}
	return 0, strings.TrimPrefix(s, "yaml: ")
}

// yamlErrorText turns an error of yaml.v3's decoder into one line.
func yamlErrorText(err error) string {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		return strings.Join(te.Errors, "; ")
	}
	return strings.TrimPrefix(err.Error(), "yaml: ")
}

// decoder decodes a yaml.Node tree into the configuration structs. Unlike
// yaml.v3's own decoder it reports every problem with its YAML path, records
// the line of every path for later validation messages, and records which
// paths were given a value so that defaults can tell "absent" from zero.
type decoder struct {
	src   *source
	col   *collector
	steps int
}

// step counts one unit of work; it returns false once the budget is spent.
func (d *decoder) step(path string, line int) bool {
	d.steps++
	if d.steps == maxSteps {
		d.col.addBad(d.src, "", line, "the document is too large or expands too many aliases (at %s)", path)
	}
	return d.steps < maxSteps
}

// decode decodes n into v, which must be settable.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	if !d.step(path, n.Line) {
		return
	}
	for n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return
		}
		n = n.Alias
	}
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return
		}
		d.decode(n.Content[0], v, path)
		return
	}
	if isNull(n) {
		return
	}
	if d.special(n, v, path) {
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.mapping(n, v, path)
	case reflect.Slice:
		d.sequence(n, v, path)
	case reflect.String:
		d.str(n, v, path)
	case reflect.Bool:
		d.boolean(n, v, path)
	case reflect.Int:
		d.integer(n, v, path)
	case reflect.Float64:
		d.float(n, v, path)
	case reflect.Map:
		if v.Type().Key().Kind() != reflect.String {
			panic(fmt.Sprintf("config: cannot decode into %s", v.Type()))
		}
		d.keyedMap(n, v, path)
	default:
		// Only reachable if a field of an unsupported type is added to
		// the configuration structs.
		panic(fmt.Sprintf("config: cannot decode into %s", v.Type()))
	}
}

// special decodes n into v when v has one of the types decoded their own
// way (durations, JSON, maps), and reports whether it did.
func (d *decoder) special(n *yaml.Node, v reflect.Value, path string) bool {
	switch v.Type() {
	case durationType:
		d.duration(n, v, path)
	case rawJSONType:
		d.rawJSON(n, v, path)
	case anyMapType:
		d.anyMap(n, v, path)
	case strMapType:
		d.stringMap(n, v, path)
	default:
		return false
	}
	return true
}

func (d *decoder) str(n *yaml.Node, v reflect.Value, path string) {
	if !d.is(n, yaml.ScalarNode, path, "a string") {
		return
	}
	v.SetString(n.Value)
	if n.Value != "" {
		d.src.set[path] = true
	}
}

func (d *decoder) boolean(n *yaml.Node, v reflect.Value, path string) {
	if !d.scalar(n, path, "true or false") {
		return
	}
	switch n.Value {
	case "true", "True", "TRUE":
		v.SetBool(true)
	case "false", "False", "FALSE":
		v.SetBool(false)
	default:
		d.col.addBad(d.src, path, n.Line, "expected true or false, got %q", abbrev(n.Value, 40))
		return
	}
	d.src.set[path] = true
}

func (d *decoder) integer(n *yaml.Node, v reflect.Value, path string) {
	if !d.scalar(n, path, "an integer") {
		return
	}
	i, err := strconv.ParseInt(n.Value, 10, 32)
	if err != nil {
		d.col.addBad(d.src, path, n.Line, "expected an integer, got %q", abbrev(n.Value, 40))
		return
	}
	v.SetInt(i)
	d.src.set[path] = true
}

func (d *decoder) float(n *yaml.Node, v reflect.Value, path string) {
	if !d.scalar(n, path, "a number") {
		return
	}
	f, err := strconv.ParseFloat(n.Value, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		d.col.addBad(d.src, path, n.Line, "expected a number such as 0.25, got %q", abbrev(n.Value, 40))
		return
	}
	v.SetFloat(f)
	d.src.set[path] = true
}

// scalar checks that n is a non-empty scalar for a typed (non-string)
// value. An empty string, as left by "${UNSET}", counts as absent.
func (d *decoder) scalar(n *yaml.Node, path, want string) bool {
	return d.is(n, yaml.ScalarNode, path, want) && n.Value != ""
}

func (d *decoder) duration(n *yaml.Node, v reflect.Value, path string) {
	if !d.scalar(n, path, `a duration such as "30s" or "5m"`) {
		return
	}
	dur, err := time.ParseDuration(n.Value)
	if err != nil {
		d.col.addBad(d.src, path, n.Line, "invalid duration %q: use a Go duration such as \"20s\", \"5m\" or \"1h30m\"", abbrev(n.Value, 40))
		return
	}
	v.SetInt(int64(dur))
	d.src.set[path] = true
}

// rawJSON decodes a YAML mapping, or a string holding JSON text, into JSON.
func (d *decoder) rawJSON(n *yaml.Node, v reflect.Value, path string) {
	var raw []byte
	switch n.Kind {
	case yaml.ScalarNode:
		if n.ShortTag() != "!!str" {
			d.col.addBad(d.src, path, n.Line, "expected a JSON object (as YAML or as a JSON string), got %s", describe(n))
			return
		}
		if n.Value == "" {
			return
		}
		raw = []byte(n.Value)
		if !json.Valid(raw) {
			d.col.addBad(d.src, path, n.Line, "invalid JSON")
			return
		}
	case yaml.MappingNode:
		var x any
		if err := n.Decode(&x); err != nil {
			d.col.addBad(d.src, path, n.Line, "%s", yamlErrorText(err))
			return
		}
		b, err := json.Marshal(x)
		if err != nil {
			d.col.addBad(d.src, path, n.Line, "cannot be represented as JSON: %v", err)
			return
		}
		raw = b
	default:
		d.col.addBad(d.src, path, n.Line, "expected a JSON object (as YAML or as a JSON string), got %s", describe(n))
		return
	}
	v.SetBytes(raw)
	d.src.set[path] = true
}

// anyMap decodes free-form values (claims) with yaml.v3's own decoder,
// which guards against alias bombs itself.
func (d *decoder) anyMap(n *yaml.Node, v reflect.Value, path string) {
	if !d.is(n, yaml.MappingNode, path, "a mapping") {
		return
	}
	m := make(map[string]any)
	if err := n.Decode(&m); err != nil {
		d.col.addBad(d.src, path, n.Line, "%s", yamlErrorText(err))
		return
	}
	v.Set(reflect.ValueOf(m))
	d.src.set[path] = true
}

// stringMap decodes a mapping of strings to strings (scope descriptions);
// each key gets its own path and line, for the problems about it.
func (d *decoder) stringMap(n *yaml.Node, v reflect.Value, path string) {
	if !d.is(n, yaml.MappingNode, path, "a mapping (key: value lines)") {
		return
	}
	m := make(map[string]string)
	for _, e := range d.entries(n, path) {
		if e.value.Kind != yaml.ScalarNode || isNull(e.value) {
			d.col.addBad(d.src, e.path, e.line, "expected a string, got %s", describe(e.value))
			continue
		}
		m[e.key] = e.value.Value
	}
	v.Set(reflect.ValueOf(m))
	d.src.set[path] = true
}

// keyedMap decodes a mapping whose keys the operator chooses (such as
// authorization_details.types) into a map from string to any decodable
// type, each value at the path "path.key".
func (d *decoder) keyedMap(n *yaml.Node, v reflect.Value, path string) {
	if !d.is(n, yaml.MappingNode, path, "a mapping (key: value lines)") {
		return
	}
	m := reflect.MakeMap(v.Type())
	for _, e := range d.entries(n, path) {
		elem := reflect.New(v.Type().Elem()).Elem()
		d.decode(e.value, elem, e.path)
		m.SetMapIndex(reflect.ValueOf(e.key).Convert(v.Type().Key()), elem)
	}
	v.Set(m)
	d.src.set[path] = true
}

func (d *decoder) sequence(n *yaml.Node, v reflect.Value, path string) {
	if !d.is(n, yaml.SequenceNode, path, "a list") {
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, c := range n.Content {
		p := joinIndex(path, i)
		d.src.lines[p] = c.Line
		d.decode(c, s.Index(i), p)
	}
	v.Set(s)
	d.src.set[path] = true
}

type pair struct{ key, value *yaml.Node }

// is reports whether n is of kind k; if not, it records the problem
// "expected what, got ..." at path.
func (d *decoder) is(n *yaml.Node, k yaml.Kind, path, what string) bool {
	if n.Kind != k {
		d.col.addBad(d.src, path, n.Line, "expected %s, got %s", what, describe(n))
		return false
	}
	return true
}

// entry is one key of a mapping whose keys the operator chooses: the key,
// its path and line, and its value with aliases resolved.
type entry struct {
	key, path string
	line      int
	value     *yaml.Node
}

// entries returns the entries of mapping n at path, recording the line of
// each key.
func (d *decoder) entries(n *yaml.Node, path string) []entry {
	var out []entry
	for _, p := range d.pairs(n, path, make(map[*yaml.Node]bool)) {
		kp := joinKey(path, p.key.Value)
		d.src.lines[kp] = p.key.Line
		val := p.value
		for val.Kind == yaml.AliasNode && val.Alias != nil {
			val = val.Alias
		}
		out = append(out, entry{key: p.key.Value, path: kp, line: p.key.Line, value: val})
	}
	return out
}

// mapping decodes a mapping into a struct, by the fields' yaml tags.
// Unknown keys are errors: a misspelt key would otherwise be a setting
// silently left at its default.
func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string) {
	if !d.is(n, yaml.MappingNode, path, "a mapping (key: value lines)") {
		return
	}
	fields := yamlFields(v.Type())
	for _, p := range d.pairs(n, path, make(map[*yaml.Node]bool)) {
		key := p.key.Value
		kp := joinKey(path, key)
		i, ok := fields[key]
		if !ok {
			d.col.addBad(d.src, kp, p.key.Line, "%s", unknownKey(key, fields))
			continue
		}
		d.src.lines[kp] = p.key.Line
		if isNull(p.value) && isHexColorComment(p.key.LineComment) {
			// "accent_color: #0a5c36" is a key without a value and a comment.
			d.col.addBad(d.src, kp, p.key.Line, "has no value: YAML reads an unquoted # as the start of a comment; quote the colour, as \"%s\"", p.key.LineComment)
			continue
		}
		d.decode(p.value, v.Field(i), kp)
	}
	d.src.set[path] = true
}

// pairs returns the key/value pairs of mapping n, with YAML merge keys
// ("<<: *defaults") resolved: explicit keys win over merged ones, and
// earlier merged mappings over later ones. Duplicate and non-string keys
// are reported.
func (d *decoder) pairs(n *yaml.Node, path string, merging map[*yaml.Node]bool) []pair {
	if merging[n] {
		d.col.addBad(d.src, path, n.Line, "a merge key (<<) includes the mapping it is in")
		return nil
	}
	merging[n] = true
	defer delete(merging, n)

	var out, merged []pair
	seen := make(map[string]bool)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if !d.step(path, k.Line) {
			return out
		}
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merged = append(merged, d.mergePairs(val, path, merging)...)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			d.col.addLine(d.src, path, k.Line, "keys must be plain strings, got %s", describe(k))
			continue
		}
		if seen[k.Value] {
			d.col.add(d.src, joinKey(path, k.Value), "duplicate key %q (line %d); it is set earlier in the same mapping", k.Value, k.Line)
			continue
		}
		seen[k.Value] = true
		out = append(out, pair{k, val})
	}
	for _, p := range merged {
		if !seen[p.key.Value] {
			seen[p.key.Value] = true
			out = append(out, p)
		}
	}
	return out
}

// mergePairs returns the pairs a merge key's value brings: one mapping, or
// a list of mappings (YAML merge key type, https://yaml.org/type/merge.html).
func (d *decoder) mergePairs(val *yaml.Node, path string, merging map[*yaml.Node]bool) []pair {
	for val.Kind == yaml.AliasNode && val.Alias != nil {
		val = val.Alias
	}
	switch val.Kind {
	case yaml.MappingNode:
		return d.pairs(val, path, merging)
	case yaml.SequenceNode:
		var out []pair
		for _, c := range val.Content {
			for c.Kind == yaml.AliasNode && c.Alias != nil {
				c = c.Alias
			}
			if c.Kind != yaml.MappingNode {
				d.col.addBad(d.src, path, c.Line, "a merge key (<<) takes a mapping or a list of mappings, got %s", describe(c))
				continue
			}
			out = append(out, d.pairs(c, path, merging)...)
		}
		return out
	}
	d.col.addBad(d.src, path, val.Line, "a merge key (<<) takes a mapping or a list of mappings, got %s", describe(val))
	return nil
}

// yamlFields maps the yaml keys of struct type t to field indexes.
func yamlFields(t reflect.Type) map[string]int {
	m := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		m[name] = i
	}
	return m
}

// unknownKey says a key is unknown, suggesting the nearest known key.
func unknownKey(key string, fields map[string]int) string {
	best, bestDist := "", 4
	for f := range fields {
		if dist := levenshtein(key, f); dist < bestDist || dist == bestDist && f < best {
			best, bestDist = f, dist
		}
	}
	if best != "" && bestDist <= max(1, len(key)/3) {
		return fmt.Sprintf("unknown key %q; did you mean %q?", abbrev(key, 40), best)
	}
	known := make([]string, 0, len(fields))
	for f := range fields {
		known = append(known, f)
	}
	slices.Sort(known)
	return fmt.Sprintf("unknown key %q; the keys here are %s", abbrev(key, 40), strings.Join(known, ", "))
}

func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// isHexColorComment reports whether a comment is a colour ("#0a5c36",
// "#fff") that was meant as a value.
func isHexColorComment(c string) bool {
	return isHexColor(c) || len(c) == 4 && isHexColor(c[:1]+c[1:2]+c[1:2]+c[2:3]+c[2:3]+c[3:4]+c[3:4])
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names what a node is, for "expected X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!str":
			return fmt.Sprintf("the string %q", abbrev(n.Value, 40))
		case "!!null":
			return "nothing"
		}
		return fmt.Sprintf("%q", abbrev(n.Value, 40))
	}
	return "an alias"
}

// abbrev shortens s to at most n runes, for quoting in messages.
func abbrev(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n]) + "…"
}
