//go:build !fuzzing

package httpapi

import (
	"testing"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	redisstore "github.com/cibaproxy/cibaproxy/internal/store/redis"
	"github.com/cibaproxy/cibaproxy/internal/store/redis/redistest"
)

// redisBackends is the Redis store, on a redis-server of its own, for the
// tests that run on every store (testStores). The build scripts/fuzz.sh
// makes (-tags fuzzing, which runs no test but the fuzz targets) has
// stores_fuzzing_test.go's instead: httpapi's binary with the fuzzing
// instrumentation then compiles neither the Redis store nor go-redis.
func redisBackends() []storeBackend {
	return []storeBackend{{"redis", func(t *testing.T) ciba.Store {
		srv := redistest.Start(t)
		s, err := redisstore.Open(t.Context(), redisstore.Config{Addrs: []string{srv.Addr()}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}}}
}
