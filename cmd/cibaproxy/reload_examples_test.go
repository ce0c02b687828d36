package main

import (
	"path/filepath"
	"testing"

	"github.com/cibaproxy/cibaproxy/internal/config"
)

// TestChangedSettingsExamplesUnchanged: each example config, loaded twice,
// has no changed setting: a SIGHUP without an edit warns of nothing.
func TestChangedSettingsExamplesUnchanged(t *testing.T) {
	files, err := filepath.Glob("../../examples/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("examples: %v, %v", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			a, err := config.Load(f)
			if err != nil {
				t.Skipf("needs its environment: %v", err)
			}
			b, err := config.Load(f)
			if err != nil {
				t.Fatal(err)
			}
			if diff := changedSettings(a, b); len(diff) != 0 {
				t.Errorf("changed settings %v", diff)
			}
		})
	}
}
