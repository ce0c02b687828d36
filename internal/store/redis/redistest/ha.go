package redistest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cibaproxy/cibaproxy/internal/testport"
)

// Topologies for high-availability tests: a Redis Cluster and a Sentinel
// set, each made of Servers started by Start, so that a test can kill any
// of them (Kill: SIGKILL) and see the others fail over. Failure detection
// is tuned for tests: a node or master silent for a second is failed over.

// haTimeout bounds the waits for a topology to form or fail over.
const haTimeout = 30 * time.Second

// nodeTimeout is the cluster-node-timeout and the Sentinels'
// down-after-milliseconds, in milliseconds.
const nodeTimeout = 1000

// Cluster is a Redis Cluster of Servers on loopback ports.
type Cluster struct {
	t testing.TB
	// Nodes are the servers, the first masters then their replicas in
	// the order of StartCluster.
	Nodes []*Server
}

// StartCluster starts masters Redis Cluster masters with replicas
// replicas each (no persistence), assigns the hash slots evenly and waits
// until every node reports cluster_state:ok and every replica is in sync.
// Every server is killed when the test ends. It skips or fails like
// Start when there is no redis-server.
func StartCluster(t testing.TB, masters, replicas int) *Cluster {
	t.Helper()
	if masters < 1 || replicas < 0 {
		t.Fatalf("redistest: a cluster of %d masters with %d replicas each", masters, replicas)
	}
	c := &Cluster{t: t}
	var bus0 int
	for i := range masters * (1 + replicas) {
		bus, err := testport.Free()
		if err != nil {
			t.Fatalf("redistest: %v", err)
		}
		if i == 0 {
			bus0 = bus
		}
		c.Nodes = append(c.Nodes, Start(t, WithArgs(
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", strconv.Itoa(nodeTimeout),
			"--cluster-port", strconv.Itoa(bus),
			"--repl-diskless-sync-delay", "0",
		)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), haTimeout)
	defer cancel()
	clients := make([]*redis.Client, len(c.Nodes))
	for i, n := range c.Nodes {
		clients[i] = redis.NewClient(&redis.Options{Addr: n.Addr()})
		defer func() { _ = clients[i].Close() }()
	}
	ids := make([]string, len(c.Nodes))
	for i, cl := range clients {
		id, err := cl.ClusterMyID(ctx).Result()
		if err != nil {
			t.Fatalf("redistest: CLUSTER MYID on %s: %v", c.Nodes[i].Addr(), err)
		}
		ids[i] = id
	}
	const slots = 16384
	for i := range masters {
		lo, hi := i*slots/masters, (i+1)*slots/masters-1
		if err := clients[i].ClusterAddSlotsRange(ctx, lo, hi).Err(); err != nil {
			t.Fatalf("redistest: CLUSTER ADDSLOTSRANGE on %s: %v", c.Nodes[i].Addr(), err)
		}
	}
	for i := 1; i < len(clients); i++ {
		if err := clients[i].Do(ctx, "CLUSTER", "MEET", "127.0.0.1", c.Nodes[0].port, bus0).Err(); err != nil {
			t.Fatalf("redistest: CLUSTER MEET from %s: %v", c.Nodes[i].Addr(), err)
		}
	}
	// A replica can follow its master once it knows it.
	for i := masters; i < len(clients); i++ {
		m := (i - masters) % masters
		waitFor(t, ctx, "node "+c.Nodes[i].Addr()+" knows its master", func() bool {
			nodes, err := clients[i].ClusterNodes(ctx).Result()
			return err == nil && strings.Contains(nodes, ids[m])
		})
		if err := clients[i].Do(ctx, "CLUSTER", "REPLICATE", ids[m]).Err(); err != nil {
			t.Fatalf("redistest: CLUSTER REPLICATE on %s: %v", c.Nodes[i].Addr(), err)
		}
	}
	for i, cl := range clients {
		waitFor(t, ctx, "node "+c.Nodes[i].Addr()+" ready", func() bool {
			info, err := cl.ClusterInfo(ctx).Result()
			if err != nil || !strings.Contains(info, "cluster_state:ok") ||
				!strings.Contains(info, "cluster_known_nodes:"+strconv.Itoa(len(c.Nodes))+"\r") {
				return false
			}
			if i < masters {
				return true
			}
			repl, err := cl.Info(ctx, "replication").Result()
			return err == nil && strings.Contains(repl, "master_link_status:up")
		})
	}
	return c
}

// Addrs returns the addresses of every node (the seeds of a client).
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr()
	}
	return addrs
}

// Node returns the node at addr, or nil.
func (c *Cluster) Node(addr string) *Server {
	for _, n := range c.Nodes {
		if n.Addr() == addr {
			return n
		}
	}
	return nil
}

// MasterOf returns the node that serves key as master now, asking the live
// nodes.
func (c *Cluster) MasterOf(ctx context.Context, key string) (*Server, error) {
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), MaxRedirects: 8})
	defer func() { _ = cc.Close() }()
	cl, err := cc.MasterForKey(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("master of %q: %w", key, err)
	}
	n := c.Node(cl.Options().Addr)
	if n == nil {
		return nil, fmt.Errorf("master of %q: unknown node %s", key, cl.Options().Addr)
	}
	return n, nil
}

// WaitFailover waits until a running node serves as master every slot
// that old served, and every running node reports cluster_state:ok, and
// returns how long it waited. Call it after killing old, a master.
func (c *Cluster) WaitFailover(ctx context.Context, old *Server) time.Duration {
	c.t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, haTimeout)
	defer cancel()
	for _, n := range c.Nodes {
		if !n.running() {
			continue
		}
		cl := redis.NewClient(&redis.Options{Addr: n.Addr()})
		waitFor(c.t, ctx, "node "+n.Addr()+" to serve the slots of "+old.Addr()+" elsewhere", func() bool {
			shards, err := cl.ClusterShards(ctx).Result()
			if err != nil {
				return false
			}
			for _, sh := range shards {
				if len(sh.Slots) == 0 {
					continue
				}
				served := false
				for _, n := range sh.Nodes {
					if n.Role != "master" {
						continue
					}
					if n.Port == int64(old.port) || n.Health != "online" {
						return false
					}
					served = true
				}
				if !served {
					return false
				}
			}
			info, err := cl.ClusterInfo(ctx).Result()
			return err == nil && strings.Contains(info, "cluster_state:ok")
		})
		_ = cl.Close()
	}
	return time.Since(start)
}

// WaitReplicated waits until every master that serves slots has at least
// one replica in sync (a failed master restarted with Restart comes back
// as a replica of the node that took over), and returns how long it
// waited.
func (c *Cluster) WaitReplicated(ctx context.Context) time.Duration {
	c.t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, haTimeout)
	defer cancel()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), MaxRedirects: 8})
	defer func() { _ = cc.Close() }()
	waitFor(c.t, ctx, "every master to have a replica in sync", func() bool {
		cc.ReloadState(ctx)
		return cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			if onlineReplicas(ctx, m) < 1 {
				return errors.New("no replica")
			}
			return nil
		}) == nil
	})
	return time.Since(start)
}

// onlineReplicas returns how many replicas in sync the server c has.
func onlineReplicas(ctx context.Context, c *redis.Client) int {
	info, err := c.Info(ctx, "replication").Result()
	if err != nil {
		return -1
	}
	n := 0
	for _, line := range strings.Split(info, "\n") {
		if strings.HasPrefix(line, "slave") && strings.Contains(line, ",state=online,") {
			n++
		}
	}
	return n
}

// Sentinel is a Redis master, its replicas and the Sentinels that watch
// them, under the master name Name.
type Sentinel struct {
	t testing.TB
	// Name is the master name the Sentinels monitor.
	Name string
	// Servers are the master (first, at the start) and its replicas.
	Servers []*Server
	// Sentinels are the Sentinel processes.
	Sentinels []*Server
}

// StartSentinel starts a master with replicas replicas and sentinels
// Sentinels (quorum: a majority) and waits until the replicas are in sync
// and every Sentinel knows every replica and every other Sentinel. Every
// process is killed when the test ends.
func StartSentinel(t testing.TB, replicas, sentinels int) *Sentinel {
	t.Helper()
	s := &Sentinel{t: t, Name: "cibaproxy-test"}
	fast := WithArgs("--repl-diskless-sync-delay", "0")
	master := Start(t, fast)
	s.Servers = append(s.Servers, master)
	for range replicas {
		s.Servers = append(s.Servers, Start(t, fast, WithArgs("--replicaof", "127.0.0.1", strconv.Itoa(master.port))))
	}
	ctx, cancel := context.WithTimeout(context.Background(), haTimeout)
	defer cancel()
	for _, r := range s.Servers[1:] {
		cl := redis.NewClient(&redis.Options{Addr: r.Addr()})
		waitFor(t, ctx, "replica "+r.Addr()+" in sync", func() bool {
			repl, err := cl.Info(ctx, "replication").Result()
			return err == nil && strings.Contains(repl, "master_link_status:up")
		})
		_ = cl.Close()
	}
	conf := fmt.Sprintf("sentinel monitor %[1]s 127.0.0.1 %[2]d %[3]d\n"+
		"sentinel down-after-milliseconds %[1]s %[4]d\n"+
		"sentinel failover-timeout %[1]s 10000\n"+
		"sentinel parallel-syncs %[1]s 2\n", s.Name, master.port, sentinels/2+1, nodeTimeout)
	for range sentinels {
		s.Sentinels = append(s.Sentinels, Start(t, withConf(conf), WithArgs("--sentinel")))
	}
	for _, sn := range s.Sentinels {
		cl := redis.NewSentinelClient(&redis.Options{Addr: sn.Addr()})
		waitFor(t, ctx, "Sentinel "+sn.Addr()+" knows the replicas and Sentinels", func() bool {
			reps, err := cl.Replicas(ctx, s.Name).Result()
			if err != nil || len(reps) != replicas {
				return false
			}
			sns, err := cl.Sentinels(ctx, s.Name).Result()
			return err == nil && len(sns) == sentinels-1
		})
		_ = cl.Close()
	}
	return s
}

// withConf makes Start write conf as the configuration file.
func withConf(conf string) Option {
	return func(o *options) { o.conf = conf }
}

// Addrs returns the Sentinels' addresses (the addresses of a client).
func (s *Sentinel) Addrs() []string {
	addrs := make([]string, len(s.Sentinels))
	for i, n := range s.Sentinels {
		addrs[i] = n.Addr()
	}
	return addrs
}

// Master returns the server the Sentinels name as master now.
func (s *Sentinel) Master(ctx context.Context) (*Server, error) {
	var last error
	for _, sn := range s.Sentinels {
		if !sn.running() {
			continue
		}
		cl := redis.NewSentinelClient(&redis.Options{Addr: sn.Addr()})
		addr, err := cl.GetMasterAddrByName(ctx, s.Name).Result()
		_ = cl.Close()
		if err != nil {
			last = err
			continue
		}
		for _, srv := range s.Servers {
			if srv.Addr() == addr[0]+":"+addr[1] {
				return srv, nil
			}
		}
		return nil, fmt.Errorf("the Sentinels name an unknown master %v", addr)
	}
	return nil, fmt.Errorf("no Sentinel answers: %v", last)
}

// WaitFailover waits until the Sentinels name a running master other than
// old, that master answers as master and every other running server is its
// replica in sync, and returns it with the time waited.
func (s *Sentinel) WaitFailover(ctx context.Context, old *Server) (*Server, time.Duration) {
	s.t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, haTimeout)
	defer cancel()
	var m *Server
	waitFor(s.t, ctx, "a failover from "+old.Addr(), func() bool {
		var err error
		m, err = s.Master(ctx)
		if err != nil || m == old || !m.running() {
			return false
		}
		cl := redis.NewClient(&redis.Options{Addr: m.Addr()})
		defer func() { _ = cl.Close() }()
		repl, err := cl.Info(ctx, "replication").Result()
		if err != nil || !strings.Contains(repl, "role:master") {
			return false
		}
		running := 0
		for _, srv := range s.Servers {
			if srv.running() {
				running++
			}
		}
		return onlineReplicas(ctx, cl) == running-1
	})
	return m, time.Since(start)
}

// running reports whether the server process runs.
func (s *Server) running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// waitFor polls cond every pollEvery until it holds, or fails t when ctx
// ends first.
func waitFor(t testing.TB, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(pollEvery * 5)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("redistest: waiting for %s: %v", what, ctx.Err())
		case <-tick.C:
		}
	}
}
