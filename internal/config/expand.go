package config

import (
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// emptyRef is a reference without a default that expanded to "": the
// variable name, and whether it was set (to "") or not set at all.
type emptyRef struct {
	name string
	set  bool
}

// String is how a problem names it: "${ISS}, which is not set".
func (r emptyRef) String() string {
	if r.set {
		return "${" + r.name + "}, which is empty"
	}
	return "${" + r.name + "}, which is not set"
}

// lookupFunc returns the value of an environment variable and whether it
// is set, like os.LookupEnv.
type lookupFunc func(name string) (string, bool)

// expandTree expands ${…} references in every string scalar value under n
// (never in keys). Each node is expanded once even when aliases share it,
// so "$${X}" cannot turn into a reference on a second pass.
func expandTree(n *yaml.Node, path string, lookup lookupFunc, src *source, col *collector, seen map[*yaml.Node]bool) {
	if n == nil || seen[n] {
		return
	}
	seen[n] = true
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			expandTree(c, path, lookup, src, col, seen)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			expandTree(c, joinIndex(path, i), lookup, src, col, seen)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			expandTree(v, joinKey(path, k.Value), lookup, src, col, seen)
		}
	case yaml.AliasNode:
		expandTree(n.Alias, path, lookup, src, col, seen)
	case yaml.ScalarNode:
		if n.ShortTag() != "!!str" || !strings.Contains(n.Value, "$") {
			return
		}
		var empty []emptyRef
		v, err := expandNoting(n.Value, lookup, &empty)
		if err != nil {
			col.addBad(src, path, n.Line, "%v", err)
			return
		}
		if len(empty) > 0 {
			// A problem with this value then says where its emptiness
			// came from: "issuer: required (from ${ISS}, which is not set)".
			notes := make([]string, len(empty))
			var names []string
			for i, e := range empty {
				notes[i] = e.String()
				if !e.set {
					names = append(names, e.name)
				}
			}
			src.empty[path] = "from " + strings.Join(notes, " and ")
			if len(names) > 0 {
				col.unset = append(col.unset, unsetRef{src: src, path: path, names: names})
			}
		}
		n.Value = v
		// Pin the tag: an expanded plain scalar stays a string even when
		// the variable holds "true" or "123".
		n.Tag = "!!str"
	}
}

// expand replaces ${VAR}, ${VAR:-default} and $$ in s. Unset VAR without a
// default expands to "". A '$' not followed by '{' or '$' is kept.
func expand(s string, lookup lookupFunc) (string, error) {
	return expandNoting(s, lookup, nil)
}

// expandNoting is expand that adds to *empty, when empty is not nil, each
// reference without a default that expanded to "".
func expandNoting(s string, lookup lookupFunc, empty *[]emptyRef) (string, error) {
	if !strings.Contains(s, "$") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		c := s[i]
		if c != '$' || i+1 == len(s) {
			b.WriteByte(c)
			i++
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i += 2
		case '{':
			end := matchBrace(s, i+2)
			if end < 0 {
				return "", fmt.Errorf("unterminated \"${\" at character %d: a reference is ${NAME} or ${NAME:-default} (write $$ for a literal $)", i+1)
			}
			v, err := expandRef(s[i+2:end], lookup, empty)
			if err != nil {
				return "", err
			}
			b.WriteString(v)
			i = end + 1
		default:
			b.WriteByte('$')
			i++
		}
	}
	return b.String(), nil
}

// matchBrace returns the index of the '}' closing the "${" whose content
// starts at from, allowing nested ${…} in a default, or -1.
func matchBrace(s string, from int) int {
	depth := 0
	for j := from; j < len(s); j++ {
		switch {
		case s[j] == '$' && j+1 < len(s) && s[j+1] == '$':
			j++
		case s[j] == '$' && j+1 < len(s) && s[j+1] == '{':
			depth++
			j++
		case s[j] == '}':
			if depth == 0 {
				return j
			}
			depth--
		}
	}
	return -1
}

// expandRef expands the inside of one ${…}, noting an empty one in
// *empty (see expandNoting).
func expandRef(ref string, lookup lookupFunc, empty *[]emptyRef) (string, error) {
	name, def, hasDef := strings.Cut(ref, ":-")
	if !validVarName(name) {
		return "", fmt.Errorf("invalid reference ${%s}: a reference is ${NAME} or ${NAME:-default}, NAME made of letters, digits and '_' (write $$ for a literal $)", abbrev(ref, 40))
	}
	v, ok := lookup(name)
	if hasDef && (!ok || v == "") {
		return expandNoting(def, lookup, empty)
	}
	if empty != nil && v == "" {
		*empty = append(*empty, emptyRef{name: name, set: ok})
	}
	return v, nil
}

// validVarName reports whether s is a shell variable name.
func validVarName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_', 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
