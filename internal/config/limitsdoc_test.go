package config

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// limitsRowRE is a row of the limits table of docs/configuration.md:
// | `name` | N per `DURATION` | …
var limitsRowRE = regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\| ([0-9]+) per `([0-9a-z]+)` \\|")

// TestLimitsTableMatchesDefaults: every rate limit of Limits has a row in
// docs/configuration.md's limits table, and the default the row gives is
// the one the code applies.
func TestLimitsTableMatchesDefaults(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	documented := make(map[string]Rate)
	for _, m := range limitsRowRE.FindAllStringSubmatch(string(data), -1) {
		n, _ := strconv.Atoi(m[2])
		per, err := time.ParseDuration(m[3])
		if err != nil {
			t.Fatalf("docs/configuration.md: limits.%s: %v", m[1], err)
		}
		documented[m[1]] = Rate{Requests: n, Per: per}
	}
	l := reflect.ValueOf(mustParse(t, doc(nil), noEnv).Limits)
	rates := 0
	for i := 0; i < l.NumField(); i++ {
		f := l.Type().Field(i)
		got, ok := l.Field(i).Interface().(Rate)
		if !ok {
			continue
		}
		rates++
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		want, ok := documented[name]
		if !ok {
			t.Errorf("limits.%s has no row \"| `%s` | N per `DURATION` |\" in docs/configuration.md", name, name)
			continue
		}
		if got != want {
			t.Errorf("limits.%s: the default is %d per %s, docs/configuration.md says %d per %s", name, got.Requests, got.Per, want.Requests, want.Per)
		}
	}
	if rates == 0 || len(documented) != rates {
		t.Errorf("Limits has %d rates, docs/configuration.md's table %d", rates, len(documented))
	}
}
