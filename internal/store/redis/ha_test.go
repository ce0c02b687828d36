package redisstore

import (
	"testing"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/store/redis/redistest"
	"github.com/cibaproxy/cibaproxy/internal/store/storetest"
)

// openCfg opens a store with cfg and closes it when the test ends.
func openCfg(t *testing.T, cfg Config) *Store {
	t.Helper()
	s, err := Open(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestClusterConformance runs the store contract on a Redis Cluster of
// three masters with a replica each: every script's keys share a slot, the
// due index and ListRequests span the masters, and the change channel
// reaches a store whose pub/sub connection is on another node.
func TestClusterConformance(t *testing.T) {
	c := redistest.StartCluster(t, 3, 1)
	storetest.Run(t, func(t *testing.T) ciba.Store {
		return openCfg(t, Config{Addrs: c.Addrs(), KeyPrefix: newPrefix()})
	})
}
