package httpapi

import (
	"testing"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/store/memory"
)

// storeBackend is a store the tests that run on every store run on: open
// returns a fresh one.
type storeBackend struct {
	name string
	open func(t *testing.T) ciba.Store
}

// testStores is the memory store and, but in the fuzzing build, Redis
// (stores_redis_test.go).
func testStores() []storeBackend {
	return append([]storeBackend{{"memory", func(*testing.T) ciba.Store { return memory.New() }}}, redisBackends()...)
}
