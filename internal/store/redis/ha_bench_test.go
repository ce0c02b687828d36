package redisstore

import (
	"context"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/store/redis/redistest"
	"github.com/cibaproxy/cibaproxy/internal/store/storetest"
)

// BenchmarkDurableCreate measures the cost of WAIT (WaitReplicas 1) on
// CreateRequest, bc-authorize's write, on a master with one replica and on
// a Redis Cluster of three masters with a replica each. Each iteration
// creates one request through a store that does not wait and one through a
// store that does, alternately, so that the noise of a shared machine hits
// both alike; it reports the mean latency of each (wait0-ms, wait1-ms),
// one request at a time (serial). parallel64 measures the throughput of
// each store with 64 goroutines (noisier: run it several times).
//
//	go test -run '^$' -bench DurableCreate -benchtime 2000x ./internal/store/redis/
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
		var stores [2]*Store
		for wait := range stores {
			s, err := Open(context.Background(), Config{Addrs: addrs, KeyPrefix: newPrefix(), WaitReplicas: wait, PollCacheSize: -1})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = s.Close() })
			ready := time.Now().Add(20 * time.Second)
			for s.Ready(context.Background()) != nil {
				if time.Now().After(ready) {
					b.Fatalf("no replica in sync: %v", s.Ready(context.Background()))
				}
				time.Sleep(10 * time.Millisecond)
			}
			stores[wait] = s
		}
		// create times one CreateRequest through stores[wait] into sum.
		var sums [2]atomic.Int64
		create := func(b *testing.B, wait int) {
			start := time.Now()
			if err := stores[wait].CreateRequest(context.Background(), storetest.NewRequest()); err != nil {
				b.Error(err)
			}
			sums[wait].Add(int64(time.Since(start)))
		}
		report := func(b *testing.B) {
			for wait := range sums {
				b.ReportMetric(float64(sums[wait].Load())/float64(b.N)/1e6, "wait"+strconv.Itoa(wait)+"-ms")
				sums[wait].Store(0)
			}
		}
		b.Run(topo+"/serial", func(b *testing.B) {
			for b.Loop() {
				create(b, 0)
				create(b, 1)
			}
			report(b)
		})
		for wait := range stores {
			b.Run(topo+"/parallel64/wait"+strconv.Itoa(wait), func(b *testing.B) {
				b.SetParallelism(32) // 2 CPUs: 64 goroutines
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := stores[wait].CreateRequest(context.Background(), storetest.NewRequest()); err != nil {
							b.Error(err)
						}
					}
				})
			})
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
