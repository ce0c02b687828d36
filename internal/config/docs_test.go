package config

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// The YAML snippets of README.md and docs/*.md are checked like a config
// file. A snippet with issuer is a whole configuration; any other is a
// fragment, merged into examples/quickstart.yaml (mappings key by key, a
// mapping with another type: replacing the quick start's, a list or a value
// replacing the quick start's). A comment in the snippet tells the test
// more:
//
//	# check-config: fragment of store.redis     the snippet is the inside of that mapping
//	# check-config: skip (why)                  not a cibaproxy config (a manifest, a users file)
//
// Every ${VAR} without a default that a snippet names is set, to a value
// that fits secrets and keys alike (the base64 of 32 bytes), as a reader
// following the docs would set it.
var docMarkerRE = regexp.MustCompile(`(?m)^\s*# check-config: (fragment of ([a-z_.]+)|skip\b.*)$`)

// docVarRE finds the ${VAR} references without a default.
var docVarRE = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// docSnippet is one ```yaml block of a Markdown file.
type docSnippet struct {
	file string
	line int // of the opening fence
	text string
}

// yamlSnippets returns the ```yaml blocks of the Markdown file path.
func yamlSnippets(t *testing.T, path string) []docSnippet {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []docSnippet
	var cur *docSnippet
	for i, line := range strings.Split(string(data), "\n") {
		switch {
		case cur == nil && strings.TrimSpace(line) == "```yaml":
			cur = &docSnippet{file: path, line: i + 1}
		case cur != nil && strings.TrimSpace(line) == "```":
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			cur.text += line + "\n"
		}
	}
	if cur != nil {
		t.Errorf("%s:%d: a ```yaml block that never ends", path, cur.line)
	}
	return out
}

// mergeYAML merges the mapping node over into base (see above).
func mergeYAML(base, over *yaml.Node) {
	for i := 0; i+1 < len(over.Content); i += 2 {
		k, v := over.Content[i], over.Content[i+1]
		j := 0
		for ; j+1 < len(base.Content); j += 2 {
			if base.Content[j].Value == k.Value {
				break
			}
		}
		if j+1 >= len(base.Content) {
			base.Content = append(base.Content, k, v)
			continue
		}
		bv := base.Content[j+1]
		if bv.Kind == yaml.MappingNode && v.Kind == yaml.MappingNode && sameType(bv, v) {
			mergeYAML(bv, v)
			continue
		}
		base.Content[j+1] = v
	}
}

// sameType reports whether two mappings do not say different "type"s.
func sameType(a, b *yaml.Node) bool {
	ta, tb := mappingValue(a, "type"), mappingValue(b, "type")
	return ta == "" || tb == "" || ta == tb
}

func mappingValue(m *yaml.Node, key string) string {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1].Value
		}
	}
	return ""
}

// nestUnder wraps the mapping n as the value at the dotted path.
func nestUnder(n *yaml.Node, path string) *yaml.Node {
	keys := strings.Split(path, ".")
	for i := len(keys) - 1; i >= 0; i-- {
		n = &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{{Kind: yaml.ScalarNode, Value: keys[i]}, n}}
	}
	return n
}

// TestDocSnippetsPassCheckConfig: every config snippet of the README and
// the docs passes check-config, alone or merged into the quick start.
func TestDocSnippetsPassCheckConfig(t *testing.T) {
	root := filepath.Join("..", "..")
	files, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	files = append([]string{filepath.Join(root, "README.md")}, files...)
	baseData, err := os.ReadFile(filepath.Join(root, "examples", "quickstart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	secret := base64.StdEncoding.EncodeToString([]byte("a doc snippet's 32-byte secret!!"))
	checked := 0
	for _, f := range files {
		for _, s := range yamlSnippets(t, f) {
			where := filepath.ToSlash(strings.TrimPrefix(s.file, root+string(filepath.Separator))) + ":" + strconv.Itoa(s.line)
			var fragmentOf string
			if m := docMarkerRE.FindStringSubmatch(s.text); m != nil {
				if strings.HasPrefix(m[1], "skip") {
					continue
				}
				fragmentOf = m[2]
			}
			vars := make(map[string]string)
			for _, m := range docVarRE.FindAllStringSubmatch(s.text, -1) {
				vars[m[1]] = secret
			}
			var doc yaml.Node
			if err := yaml.Unmarshal([]byte(dedent(s.text)), &doc); err != nil || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
				t.Errorf("%s: the snippet is not a YAML mapping (%v); mark it \"# check-config: skip (why)\" if it is no config", where, err)
				continue
			}
			snippet := doc.Content[0]
			if fragmentOf != "" {
				snippet = nestUnder(snippet, fragmentOf)
			}
			data := []byte(s.text)
			if mappingValue(snippet, "issuer") == "" {
				var base yaml.Node
				if err := yaml.Unmarshal(baseData, &base); err != nil {
					t.Fatal(err)
				}
				mergeYAML(base.Content[0], snippet)
				if data, err = yaml.Marshal(&base); err != nil {
					t.Fatal(err)
				}
			}
			checked++
			lookup := func(name string) (string, bool) { v, ok := vars[name]; return v, ok }
			if _, err := parse(data, filepath.Join(root, "examples", "snippet.yaml"), lookup); err != nil {
				t.Errorf("%s: the snippet fails check-config:\n%v\n--- checked as:\n%s", where, err, data)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no YAML snippet found")
	}
}

// dedent removes the indentation common to every non-blank line of s.
func dedent(s string) string {
	lines := strings.Split(s, "\n")
	common := -1
	for _, l := range lines {
		if strings.TrimSpace(l) == "" {
			continue
		}
		n := len(l) - len(strings.TrimLeft(l, " "))
		if common < 0 || n < common {
			common = n
		}
	}
	for i, l := range lines {
		if len(l) >= common && common > 0 {
			lines[i] = l[common:]
		}
	}
	return strings.Join(lines, "\n")
}

// TestReadmePerUserLimit: the quick start says how often alice can be
// asked, and how to raise it; the shipped quick start config agrees.
func TestReadmePerUserLimit(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"at most 10 requests for one user in 10 minutes", "CIBAPROXY_REQUESTS_PER_USER=100 make run"} {
		if !strings.Contains(string(readme), want) {
			t.Errorf("the README does not say %q", want)
		}
	}
	data, err := os.ReadFile(filepath.Join("..", "..", "examples", "quickstart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		env  map[string]string
		want int
	}{{nil, 10}, {map[string]string{"CIBAPROXY_REQUESTS_PER_USER": "100"}, 100}} {
		c := mustParse(t, string(data), envMap(tc.env))
		if r := c.Limits.RequestsPerUser; r.Requests != tc.want || r.Per != 10*time.Minute {
			t.Errorf("with %v the quick start allows %d per %v, want %d per 10m as the README says", tc.env, r.Requests, r.Per, tc.want)
		}
	}
}

// docInlineRE finds inline code of a flow mapping under one key, as the
// README writes a setting in a sentence: `approval: {passkeys: {…}}`.
var docInlineRE = regexp.MustCompile("`([a-z_]+): (\\{[^`\\n]*\\})`")

// TestDocInlineSettingsPassCheckConfig: a setting the README or a doc
// writes inline, under a top-level key of the configuration, passes
// check-config merged into the quick start, as a reader adds it.
func TestDocInlineSettingsPassCheckConfig(t *testing.T) {
	root := filepath.Join("..", "..")
	files, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	files = append([]string{filepath.Join(root, "README.md")}, files...)
	topLevel := make(map[string]bool)
	ct := reflect.TypeFor[Config]()
	for i := range ct.NumField() {
		if name, _, _ := strings.Cut(ct.Field(i).Tag.Get("yaml"), ","); name != "" {
			topLevel[name] = true
		}
	}
	baseData, err := os.ReadFile(filepath.Join(root, "examples", "quickstart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range docInlineRE.FindAllStringSubmatch(string(data), -1) {
			if !topLevel[m[1]] {
				continue // a claim or a nested setting, not a top-level one
			}
			where := filepath.Base(f) + ": `" + m[1] + ": " + m[2] + "`"
			var doc yaml.Node
			if err := yaml.Unmarshal([]byte(m[1]+": "+m[2]), &doc); err != nil {
				t.Errorf("%s: not YAML: %v", where, err)
				continue
			}
			var base yaml.Node
			if err := yaml.Unmarshal(baseData, &base); err != nil {
				t.Fatal(err)
			}
			mergeYAML(base.Content[0], doc.Content[0])
			merged, err := yaml.Marshal(&base)
			if err != nil {
				t.Fatal(err)
			}
			checked++
			if _, err := parse(merged, filepath.Join(root, "examples", "snippet.yaml"), func(string) (string, bool) { return "", false }); err != nil {
				t.Errorf("%s fails check-config merged into the quick start:\n%v", where, err)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no inline setting found; README.md's approval: {passkeys: {self_enrollment: true}} was one")
	}
}
