package archtest

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/cibaproxy/cibaproxy/"

// forbidden lists, for a package, the packages it must not depend on,
// directly or through another package, in its code or its tests.
var forbidden = map[string][]string{
	// jose verifies JWTs and returns its own errors; the wire codes of
	// RFC 6749 and CIBA are chosen by its callers (clientauth.tokenError).
	"internal/jose": {"internal/ciba"},
	// josetest signs the JWTs of the tests of jose, dpop and clientauth.
	"internal/jose/josetest": {"internal/ciba"},
	// consent words scopes and expiry for the pages and the e-mail; it
	// knows nothing of requests.
	"internal/consent": {"internal/ciba"},
	// dpop verifies DPoP proofs and returns its own errors; its replay
	// record is a store's through an adapter (clientauth.ProofReplay).
	"internal/dpop": {"internal/ciba"},
	// Leaves that serve the domain without knowing it: they declare what
	// they need, and their callers adapt.
	"internal/authzdetails": {"internal/ciba"},
	"internal/limit":        {"internal/ciba"},
	"internal/notify":       {"internal/ciba"},
	"internal/outbound":     {"internal/ciba"},
	"internal/seal":         {"internal/ciba"},
	"internal/tracing":      {"internal/ciba"},
	// The shared failures (not found, exists, unavailable) sit below the
	// domain, which re-exports them; keys keeps its key set in any
	// Records and upstream/idp marks an unreachable IdP with
	// fault.ErrUnavailable, so neither needs the domain for its errors.
	"internal/fault":        {"internal/ciba"},
	"internal/keys":         {"internal/ciba"},
	"internal/upstream/idp": {"internal/ciba"},
}

// TestForbiddenImports fails when a package depends on one it must not
// (see forbidden), as go list -deps -test reports it.
func TestForbiddenImports(t *testing.T) {
	for pkg, banned := range forbidden {
		t.Run(pkg, func(t *testing.T) {
			deps := listDeps(t, module+pkg)
			if !slices.Contains(deps, module+pkg) {
				t.Fatalf("go list reports no package %s: %v", pkg, deps)
			}
			for _, b := range banned {
				if slices.Contains(deps, module+b) {
					t.Errorf("%s depends on %s", pkg, b)
				}
			}
		})
	}
}

// listDeps returns the import paths of pkg's dependencies, its tests'
// included, and of pkg itself; flags go to go list (-tags).
func listDeps(t *testing.T, pkg string, flags ...string) []string {
	t.Helper()
	args := append(append([]string{"list"}, flags...), "-deps", "-test", "-f", "{{.ImportPath}}", pkg)
	out, err := exec.CommandContext(t.Context(), "go", args...).Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("go list %s: %v %s", pkg, err, stderr)
	}
	var deps []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		// A test variant is listed as "path [path.test]".
		path, _, _ := strings.Cut(line, " ")
		deps = append(deps, path)
	}
	return deps
}
