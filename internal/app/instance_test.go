package app

import (
	"net/http/httptest"
	"testing"

	"github.com/cibaproxy/cibaproxy/internal/config"
)

// startInstance serves, on a test server, the instance of the
// configuration load returns, built with opts, and returns its issuer.
// load is called once the quick start's variables are set: the issuer
// (CIBAPROXY_ISSUER) is the test server's address, the data directory
// (CIBAPROXY_DATA) a temporary one, and the webhook (CIBAPROXY_WEBHOOK_URL)
// a closed port. The instance is closed when the test ends.
func startInstance(t *testing.T, load func() *config.Config, opts Options) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	t.Cleanup(srv.Close)
	issuer := "http://" + srv.Listener.Addr().String()
	t.Setenv("CIBAPROXY_DATA", t.TempDir())
	t.Setenv("CIBAPROXY_ISSUER", issuer)
	t.Setenv("CIBAPROXY_WEBHOOK_URL", "http://127.0.0.1:9/hook")
	a, err := New(t.Context(), load(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	srv.Config.Handler = a.Handler
	srv.Start()
	return issuer
}

// quickstart is examples/quickstart.yaml loaded, for startInstance.
func quickstart(t *testing.T) *config.Config {
	t.Helper()
	cfg, err := config.Load("../../examples/quickstart.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}
