package config

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"

	"go.yaml.in/yaml/v3"
)

// maxIncludedFile is the largest users or key file read, so that a path
// pointing at something huge fails fast.
const maxIncludedFile = 16 << 20

// Load reads the configuration file at path, expands environment variables
// in its string values, decodes it strictly, applies defaults and validates
// it. It also reads the users file and signing key file it names.
//
// The error, when there is one, is a [Problems] value listing every problem
// found, each with file, line and YAML path. Without options every problem
// counts; [TolerateUnset] is for commands that need part of the file.
func Load(path string, opts ...Option) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, Problems{{File: path, Message: fmt.Sprintf("cannot read the configuration: %v", err)}}
	}
	return parse(data, path, os.LookupEnv, opts...)
}

// Option changes how [Load] checks a configuration.
type Option func(*collector)

// TolerateUnset is the [Load] of the operator commands, which need only
// part of the configuration: a ${VAR} reference without a default to an
// unset variable, in a value whose path is not one of need nor under one,
// is left empty and the problems it causes in its value, and in the rest
// of its list element (a client, a user), are dropped. A needed value
// that refers to an unset variable is a problem even where an empty value
// is allowed ("store.path: required (from ${DB}, which is not set) by
// this command"), so that the command does not fall back on a default. In
// need, "[]" stands for any index: "clients[].client_id".
//
// The configuration returned has empty values where variables were unset:
// it is for reading the needed parts only, never for serving.
func TolerateUnset(need ...string) Option {
	return func(c *collector) {
		c.tolerant = true
		c.need = append(c.need, need...)
	}
}

// Parse is [Load] for a configuration already in memory: name is the file
// name used in problems, and its directory is the base of relative
// users_file and signing_key_file paths. Environment variables are read
// from the process environment.
func Parse(data []byte, name string) (*Config, error) {
	return parse(data, name, os.LookupEnv)
}

// parse is Parse with the environment given by lookup and the options
// opts.
func parse(data []byte, name string, lookup lookupFunc, opts ...Option) (*Config, error) {
	col := newCollector()
	for _, o := range opts {
		o(col)
	}
	src := newSource(name)
	cfg := new(Config)

	if doc := parseYAML(data, src, col); doc != nil {
		if len(doc.Content) > 0 {
			src.lines[""] = doc.Content[0].Line
		}
		expandTree(doc, "", lookup, src, col, make(map[*yaml.Node]bool))
		d := &decoder{src: src, col: col}
		d.decode(doc, reflect.ValueOf(cfg).Elem(), "")
	}
	if len(col.problems) > 0 && len(src.lines) == 0 {
		// Nothing could be decoded (a syntax error or an empty file):
		// validating would only report every required key as missing.
		return nil, col.result(name)
	}

	v := &validator{col: col, src: src, dir: filepath.Dir(name), lookup: lookup}
	v.defaults(cfg)
	v.validate(cfg)
	col.requireNeeded()
	col.refuseUnsetFallbacks()
	if err := col.result(name); err != nil {
		return nil, err
	}
	return cfg, nil
}

// readUsersFile decodes the users file of the local upstream. Its users are
// reported under the path "upstream.local.users_file[i]" in that file. ok is
// false when the file could not be read or parsed at all.
func (v *validator) readUsersFile(path string) (users []userAt, ok bool) {
	const at = "upstream.local.users_file"
	data, err := readRegularFile(path)
	if err != nil {
		v.fail(at, "cannot read the users file: %v", err)
		return nil, false
	}
	src := newSource(path)
	doc := parseYAML(data, src, v.col)
	if doc == nil {
		return nil, false
	}
	if len(doc.Content) > 0 {
		src.lines[at] = doc.Content[0].Line
	}
	expandTree(doc, at, v.lookup, src, v.col, make(map[*yaml.Node]bool))
	var list []User
	d := &decoder{src: src, col: v.col}
	d.decode(doc, reflect.ValueOf(&list).Elem(), at)
	users = make([]userAt, len(list))
	for i := range list {
		users[i] = userAt{user: &list[i], src: src, path: joinIndex(at, i)}
	}
	return users, true
}

// readRegularFile reads a file the configuration names. It refuses devices,
// pipes and directories (which could block or never end) and files larger
// than maxIncludedFile.
func readRegularFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if fi.Size() > maxIncludedFile {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxIncludedFile)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxIncludedFile+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if len(data) > maxIncludedFile {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxIncludedFile)
	}
	return data, nil
}

// resolve makes a path from the configuration relative to its directory.
func (v *validator) resolve(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(v.dir, p)
}
