package redisstore

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/store/redis/redistest"
	"github.com/cibaproxy/cibaproxy/internal/store/storetest"
)

// BenchmarkDurableCreate measures the cost of WAIT (WaitReplicas) on
// CreateRequest, bc-authorize's write: one request at a time (latency)
// and 64 at once (throughput), on a master with one replica and on a
// Redis Cluster of three masters with a replica each.
//
//	go test -run '^$' -bench DurableCreate -benchtime 3s ./internal/store/redis/
func BenchmarkDurableCreate(b *testing.B) {
	for _, topo := range []string{"replica", "cluster"} {
		var addrs []string
		switch topo {
		case "replica":
			m := redistest.Start(b, redistest.WithArgs("--repl-diskless-sync-delay", "0"))
			redistest.Start(b, redistest.WithArgs("--replicaof", "127.0.0.1", strconv.Itoa(benchPort(b, m.Addr()))))
			addrs = []string{m.Addr()}
		case "cluster":
			addrs = redistest.StartCluster(b, 3, 1).Addrs()
		}
		for _, wait := range []int{0, 1} {
			s, err := Open(context.Background(), Config{Addrs: addrs, KeyPrefix: newPrefix(), WaitReplicas: wait, PollCacheSize: -1})
			if err != nil {
				b.Fatal(err)
			}
			ready := time.Now().Add(20 * time.Second)
			for s.Ready(context.Background()) != nil && wait > 0 {
				if time.Now().After(ready) {
					b.Fatalf("no replica in sync: %v", s.Ready(context.Background()))
				}
				time.Sleep(10 * time.Millisecond)
			}
			name := topo + "/wait" + strconv.Itoa(wait)
			b.Run(name+"/serial", func(b *testing.B) {
				for b.Loop() {
					if err := s.CreateRequest(context.Background(), storetest.NewRequest()); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run(name+"/parallel64", func(b *testing.B) {
				b.SetParallelism(32) // 2 CPUs: 64 goroutines
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := s.CreateRequest(context.Background(), storetest.NewRequest()); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
			_ = s.Close()
		}
	}
}

// benchPort returns the port of addr.
func benchPort(b *testing.B, addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		b.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		b.Fatal(err)
	}
	return n
}
