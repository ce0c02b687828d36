package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse checks that Parse never panics and always returns either a
// configuration or Problems, each with a message. The seed corpus is the
// example configurations plus the files in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob(filepath.Join(examplesDir, "*.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(doc(nil)))
	f.Fuzz(func(t *testing.T, data []byte) {
		// Parse resolves users_file and signing_key_file against the
		// directory of the name: one that does not exist keeps relative
		// paths from reaching the test's own files.
		c, err := parse(data, "/nonexistent-cibaproxy-fuzz/fuzz.yaml", noEnv)
		if err == nil {
			if c == nil {
				t.Fatal("no configuration and no error")
			}
			return
		}
		var ps Problems
		if !errors.As(err, &ps) || len(ps) == 0 {
			t.Fatalf("error %T %v, want Problems", err, err)
		}
		if c != nil {
			t.Fatal("a configuration returned with problems")
		}
		for _, p := range ps {
			if p.Message == "" {
				t.Fatalf("problem without a message: %+v", p)
			}
			if strings.ContainsAny(p.String(), "\r\n") {
				t.Fatalf("problem spans several lines: %q", p)
			}
		}
	})
}
