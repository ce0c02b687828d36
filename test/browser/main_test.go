// Package browser drives cibaproxy's approval page in a real headless
// Chromium, as the user's phone would: the page itself, Approve and Deny,
// the sign-in at the identity provider (node-oidc-provider, package
// test/idp) for the oidc upstream and the password for the local one, and
// the client's poll that follows. It also checks the page at phone width.
//
// Chromium is /usr/bin/chromium or `chromium` on PATH. Without it the tests
// are skipped, except on CI (CI=true), where that is a failure.
package browser

import (
	"os"
	"testing"

	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// binary is the cibaproxy executable that TestMain built.
var binary string

func TestMain(m *testing.M) {
	bin, cleanup := testutil.MustBuild()
	binary = bin
	code := m.Run()
	cleanup()
	os.Exit(code)
}
