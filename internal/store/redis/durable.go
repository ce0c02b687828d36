package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// Durability across a failover. Redis replicates asynchronously: a write
// the master acknowledged can be lost when the master dies before a replica
// received it, and the replica promoted in its place (by Sentinel or the
// Cluster) then lacks it. Every write that cibaproxy acknowledges to a
// client (a request created by bc-authorize, a decision, a redeemed
// auth_req_id, a record such as a refresh token's single-use mark) is
// therefore followed, on the same connection, by WAIT for Config.WaitReplicas
// replicas with Config.WaitTimeout: the write is reported done only once
// that many replicas hold it. When fewer confirm in time, the write is in
// doubt (it may or may not survive a failover) and the caller gets an error
// wrapping ciba.ErrUnavailable, so the client hears temporarily_unavailable,
// never a success that a failover could take back.
//
// WAIT counts the replicas that acknowledged every write made before it on
// its connection, so the write and the WAIT go in one pipeline on one
// connection to the master of the key: for a Cluster, the key's master
// node, found by slot.

// DefaultWaitTimeout is the WaitTimeout when none is configured.
const DefaultWaitTimeout = 500 * time.Millisecond

// errNotReplicated is the error of a write that too few replicas confirmed.
var errNotReplicated = errors.New("too few replicas confirmed the write in time: it is in doubt")

// master returns the client that reaches the master of key on one
// connection per pipeline: the key's node on a Cluster, else the client.
func (s *Store) master(ctx context.Context, key string) (redis.Cmdable, error) {
	if cc, ok := s.c.(*redis.ClusterClient); ok {
		m, err := cc.MasterForKey(ctx, key)
		if err != nil {
			return nil, err
		}
		return m, nil
	}
	return s.c, nil
}

// durable runs the commands that build adds to a pipeline on the master of
// key, then WAIT on the same connection. It returns the error of WAIT (a
// failure, or too few replicas); each command's own result is in its Cmd,
// which the caller reads. Callers use it only when s.waitReplicas > 0.
func (s *Store) durable(ctx context.Context, key string, build func(p redis.Pipeliner)) error {
	c, err := s.master(ctx, key)
	if err != nil {
		return err
	}
	var wait *redis.Cmd
	_, _ = c.Pipelined(ctx, func(p redis.Pipeliner) error {
		build(p)
		wait = p.Do(ctx, "WAIT", s.waitReplicas, s.waitTimeout.Milliseconds())
		return nil
	})
	n, err := wait.Int64()
	if err != nil {
		s.reloadTopology(ctx)
		return err
	}
	if n < int64(s.waitReplicas) {
		return fmt.Errorf("%w (%d of %d within %v)", errNotReplicated, n, s.waitReplicas, s.waitTimeout)
	}
	return nil
}

// reloadTopology asks a Cluster client to learn the slots again: a
// command sent straight to a node that failed tells the client nothing.
func (s *Store) reloadTopology(ctx context.Context) {
	if cc, ok := s.c.(*redis.ClusterClient); ok {
		cc.ReloadState(ctx)
	}
}

// runDurable runs script on the one key with args like Script.Run, then
// WAITs as durable says. It returns the script's answer and the error of
// WAIT.
func (s *Store) runDurable(ctx context.Context, sc *redis.Script, key string, args ...any) (*redis.Cmd, error) {
	keys := []string{key}
	if s.waitReplicas == 0 {
		return sc.Run(ctx, s.c, keys, args...), nil
	}
	var cmd *redis.Cmd
	werr := s.durable(ctx, key, func(p redis.Pipeliner) { cmd = sc.EvalSha(ctx, p, keys, args...) })
	if cmd == nil { // no master to send to
		return failedCmd(ctx, werr), werr
	}
	if err := cmd.Err(); err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		// Not yet loaded on this node (a new master after a failover):
		// nothing ran; send the script itself.
		werr = s.durable(ctx, key, func(p redis.Pipeliner) { cmd = sc.Eval(ctx, p, keys, args...) })
	}
	if cmd.Err() != nil && !errors.Is(cmd.Err(), redis.Nil) {
		s.reloadTopology(ctx)
	}
	return cmd, werr
}

// doDurable sends one command (args, whose first key is key) like
// Client.Do, then WAITs as durable says. It returns the command's answer
// and the error of WAIT.
func (s *Store) doDurable(ctx context.Context, key string, args ...any) (*redis.Cmd, error) {
	if s.waitReplicas == 0 {
		return s.c.Do(ctx, args...), nil
	}
	var cmd *redis.Cmd
	werr := s.durable(ctx, key, func(p redis.Pipeliner) { cmd = p.Do(ctx, args...) })
	if cmd == nil {
		return failedCmd(ctx, werr), werr
	}
	if cmd.Err() != nil && !errors.Is(cmd.Err(), redis.Nil) {
		s.reloadTopology(ctx)
	}
	return cmd, werr
}

// failedCmd is the answer of a command that could not be sent.
func failedCmd(ctx context.Context, err error) *redis.Cmd {
	cmd := redis.NewCmd(ctx)
	cmd.SetErr(err)
	return cmd
}

// inDoubt wraps the failure of WAIT after a write that was made.
func inDoubt(op string, err error) error {
	return fmt.Errorf("redis store: %s: %w: the write may not survive a failover: %w", op, ciba.ErrUnavailable, err)
}

// Ready reports whether the store can take acknowledged writes: the master
// (every master of a Cluster) answers and, when the store waits for
// replicas, has at least that many connected. The error says which master
// lacks what, for /readyz.
func (s *Store) Ready(ctx context.Context) error {
	if s.closed.Load() {
		return errClosed
	}
	check := func(ctx context.Context, c redis.Cmdable) error {
		info, err := c.Info(ctx, "replication").Result()
		if err != nil {
			return unavailable("ready", err)
		}
		if s.waitReplicas == 0 {
			return nil
		}
		// Replicas in sync show as "slave<n>:ip=...,state=online,...".
		n := 0
		for line := range strings.Lines(info) {
			if strings.HasPrefix(line, "slave") && strings.Contains(line, ",state=online,") {
				n++
			}
		}
		if n < s.waitReplicas {
			return fmt.Errorf("redis store: ready: %w: the master has %d replicas in sync, wait_replicas is %d: acknowledged writes are refused", ciba.ErrUnavailable, n, s.waitReplicas)
		}
		return nil
	}
	if cc, ok := s.c.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			if err := check(ctx, c); err != nil {
				return fmt.Errorf("%s: %w", c.Options().Addr, err)
			}
			return nil
		})
	}
	return check(ctx, s.c)
}
