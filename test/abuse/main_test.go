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

// burstTimeout bounds one request of a burst: many requests sent at once,
// a few of which run a bcrypt check (a client secret, password or user
// code). It is longer than waitTimeout because the checked requests of a
// burst run side by side, and on a machine at a load of 25 to 30 one bcrypt
// check in the race-enabled server took 20 s; and longer than the server's
// own write window (ciba.long_poll + 30 s: 50 s with the quick start), so
// the test never gives up on an answer the server would still send. It is
// testutil.HTTP's bound. It bounds a hang, not a speed: the bursts' tests
// count answers by kind, never time one.
const burstTimeout = 90 * time.Second

// burstCtx is a context bounded by burstTimeout, cancelled when the test
// ends, for the requests of a burst.
func burstCtx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), burstTimeout)
	t.Cleanup(cancel)
	return c
}

// ctx is a context bounded by waitTimeout, cancelled when the test ends.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return c
}
