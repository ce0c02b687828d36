// Package abuse attacks the built cibaproxy binary the way an attacker
// would, with the shipped example configurations unchanged
// (examples/quickstart.yaml, examples/oidc.yaml with the test IdP,
// examples/redis.yaml with two instances on one real redis-server), and
// checks that every abuse defence holds at its default limit, one request at
// a time and in parallel bursts of 100 or more from one address, while
// legitimate traffic at the documented volume still passes.
//
// Each file covers one class of attack (see SECURITY.md, "Threat model",
// which names the test for each). A test that must change a default says
// why in a comment; none of the defences under test is raised or turned
// off.
package abuse

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// binary is the cibaproxy executable built from this tree for the package.
var binary string

func TestMain(m *testing.M) {
	bin, cleanup := testutil.MustBuild()
	binary = bin
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// waitTimeout bounds every wait of a test for something a server sends.
const waitTimeout = 60 * time.Second

// ctx is a context bounded by waitTimeout, cancelled when the test ends.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return c
}
