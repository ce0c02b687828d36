package config

import (
	"fmt"
	"slices"
	"strings"
)

// Problem is one thing wrong with a configuration.
type Problem struct {
	// File is the file the problem is in: the configuration file, or the
	// users file it names.
	File string
	// Path is the YAML path of the offending value, like
	// "clients[1].backchannel_token_delivery_mode"; empty for the whole
	// document.
	Path string
	// Line is the 1-based line of the value (or of its nearest enclosing
	// value when it is missing); 0 when unknown.
	Line int
	// Message says what is wrong and, where it helps, what is expected.
	// It never quotes a secret (passwords, client secrets, hashes, keys,
	// URLs other than the issuer).
	Message string
}

// String formats p as "FILE:LINE: PATH: MESSAGE", leaving out the parts
// that are unknown.
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
	}
	b.WriteString(": ")
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// Problems is every problem found in a configuration. It is the error
// [Load] and [Parse] return; use errors.As to get at the list.
type Problems []Problem

// Error lists the problems one per line, as [Problem.String] formats them.
func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// collector gathers problems while a configuration is checked. A value that
// could not be decoded is marked bad, so that validation does not pile a
// second, confusing message ("must be positive") on top of the first
// ("invalid duration").
type collector struct {
	problems Problems
	bad      map[string]bool // file + "\x00" + path
	// tolerant is set by [TolerateUnset]: a problem that comes from a
	// variable in unset is dropped unless its path is needed (need).
	tolerant bool
	need     []string
	// unset is every value with a ${VAR} reference, without a default,
	// to an unset variable.
	unset []unsetRef
}

// unsetRef is a value, at path of src, that refers to the unset
// variables names (each once per reference, in order).
type unsetRef struct {
	src   *source
	path  string
	names []string
}

func newCollector() *collector {
	return &collector{bad: make(map[string]bool)}
}

// add records a problem at path of src, unless path or one of its parents
// was marked bad.
func (c *collector) add(src *source, path, format string, args ...any) {
	if c.tolerated(src, path) {
		return
	}
	c.addLine(src, path, src.line(path), format, args...)
}

// tolerated reports whether a problem at path of src is dropped: the
// collector is tolerant, path is not needed, and a value at path, under
// it, or in the same list element (clients[2]) refers to an unset
// variable. The list element is the unit because a check of one field of
// it may report on another ("upstream_credentials: required unless the
// client has a plain client_secret").
func (c *collector) tolerated(src *source, path string) bool {
	if !c.tolerant || c.needs(path) {
		return false
	}
	scope := path
	if i := strings.LastIndexByte(path, ']'); i >= 0 {
		scope = path[:i+1]
	}
	if scope == "" {
		return false
	}
	for _, u := range c.unset {
		if u.src.file == src.file && !c.needs(u.path) && within(u.path, scope) {
			return true
		}
	}
	return false
}

// needs reports whether path is, or is under, one of the needed paths,
// in which "[]" stands for any index ("clients[].client_id").
func (c *collector) needs(path string) bool {
	p := anyIndex(path)
	for _, n := range c.need {
		if within(p, n) {
			return true
		}
	}
	return false
}

// within reports whether path is parent or under it.
func within(path, parent string) bool {
	rest, ok := strings.CutPrefix(path, parent)
	return ok && (rest == "" || rest[0] == '.' || rest[0] == '[')
}

// anyIndex replaces the indexes of path by "[]": "a[2].b" → "a[].b".
func anyIndex(path string) string {
	if !strings.Contains(path, "[") {
		return path
	}
	var b strings.Builder
	skip := false
	for i := 0; i < len(path); i++ {
		switch c := path[i]; {
		case c == '[':
			b.WriteByte(c)
			skip = true
		case c == ']':
			b.WriteByte(c)
			skip = false
		case !skip:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// requireNeeded adds, when the collector is tolerant, a problem for each
// needed value that refers to an unset variable and has none yet.
func (c *collector) requireNeeded() {
	if !c.tolerant {
		return
	}
	for _, u := range c.unset {
		if !c.needs(u.path) || slices.ContainsFunc(c.problems, func(p Problem) bool {
			return p.File == u.src.file && p.Path == oneLine(u.path)
		}) {
			continue
		}
		c.add(u.src, u.path, "required by this command")
	}
}

// addLine is add with the line given.
func (c *collector) addLine(src *source, path string, line int, format string, args ...any) {
	if c.isBad(src, path) {
		return
	}
	c.problems = append(c.problems, Problem{
		File:    src.file,
		Path:    oneLine(path),
		Line:    line,
		Message: oneLine(src.why(path, fmt.Sprintf(format, args...))),
	})
}

// oneLine keeps a message on one line, so that Problems prints one problem
// per line whatever an underlying error says.
func oneLine(s string) string {
	return strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(s)
}

// addBad records a decoding problem at path and marks path bad.
func (c *collector) addBad(src *source, path string, line int, format string, args ...any) {
	if c.isBad(src, path) {
		return
	}
	c.bad[src.file+"\x00"+path] = true
	c.problems = append(c.problems, Problem{
		File:    src.file,
		Path:    oneLine(path),
		Line:    line,
		Message: oneLine(src.why(path, fmt.Sprintf(format, args...))),
	})
}

func (c *collector) isBad(src *source, path string) bool {
	for {
		if c.bad[src.file+"\x00"+path] {
			return true
		}
		if path == "" {
			return false
		}
		path = parentPath(path)
	}
}

// result returns the problems sorted by file (the main file first) and line,
// or nil when there are none.
func (c *collector) result(mainFile string) error {
	if len(c.problems) == 0 {
		return nil
	}
	ps := slices.Clone(c.problems)
	slices.SortStableFunc(ps, func(a, b Problem) int {
		am, bm := a.File == mainFile, b.File == mainFile
		switch {
		case am && !bm:
			return -1
		case bm && !am:
			return 1
		case a.File != b.File:
			return strings.Compare(a.File, b.File)
		}
		return a.Line - b.Line
	})
	return ps
}

// source is one YAML file being decoded: its name and the line of every
// path seen in it.
type source struct {
	file  string
	lines map[string]int
	// set holds the paths that were given a non-empty value, so defaults
	// can tell "absent" from an explicit zero.
	set map[string]bool
	// empty says, for the paths whose value has ${VAR} references that
	// expanded to nothing, which: "from ${ISS}, which is not set".
	empty map[string]string
}

func newSource(file string) *source {
	return &source{file: file, lines: make(map[string]int), set: make(map[string]bool), empty: make(map[string]string)}
}

// why appends to the message msg about path where an empty value came
// from, when it came from a variable.
func (s *source) why(path, msg string) string {
	e, ok := s.empty[path]
	if !ok {
		return msg
	}
	if rest, ok := strings.CutPrefix(msg, "required"); ok {
		return "required (" + e + ")" + rest
	}
	return msg + " (" + e + ")"
}

// line returns the line of path, or of its nearest parent that appears in
// the file (a missing key is reported on the mapping that lacks it).
func (s *source) line(path string) int {
	for {
		if l, ok := s.lines[path]; ok {
			return l
		}
		if path == "" {
			return 0
		}
		path = parentPath(path)
	}
}

// parentPath returns the path of the value that contains path:
// "a.b[2].c" → "a.b[2]" → "a.b" → "a" → "".
func parentPath(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}

// joinKey appends a mapping key to a path.
func joinKey(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// joinIndex appends a sequence index to a path.
func joinIndex(path string, i int) string {
	return fmt.Sprintf("%s[%d]", path, i)
}
