// Package redisstore is the ciba.Store shared by several cibaproxy
// instances through Redis or Valkey (standalone, Sentinel or Cluster): Redis
// TTLs collect expired requests and records, and Redis pub/sub wakes the
// instance that waits for a change of a request.
//
// # Key layout
//
// With the default KeyPrefix "cibaproxy:" and an auth_req_id <id>:
//
//	cibaproxy:{<id>}:req            hash: the request, its version and its pace state
//	cibaproxy:approval:<apprid>     string: the auth_req_id whose ApprovalID is <apprid>
//	cibaproxy:rec:<n>:<kind>:<key>  string: a record; <n> is the length of <kind> in bytes
//	cibaproxy:changes               pub/sub channel: the id of each changed request
//	cibaproxy:due                   sorted set: ids of requests with a delivery pending, by next attempt (due.go)
//	cibaproxy:limit:<name>:{<hash>} string: a shared abuse limit's token bucket (limit.go)
//
// Every key of one request carries the hash tag {<id>}, so it lives in one
// Cluster hash slot and one Lua script can change it atomically. The fields
// of the request hash are described in scripts.go; pace state is a field of
// the request hash, so it expires and is deleted with the request, but is
// written apart from it. The approval index is a lookup in another slot: it
// is claimed (SET NX) before the request is created and released after the
// request is deleted, so an index key without its request can exist for a
// moment, or until its TTL after a failure, and is then ignored.
//
// # Expiry
//
// A request key expires Retention after the request's ExpiresAt, or
// Retention after the next attempt of a delivery still due if that is later,
// and never sooner than a minute after its last write. The approval index key
// expires with it. Records expire after their lifetime (PX).
//
// # Atomicity and failures
//
// CreateRequest, UpdateRequest, DeleteRequest and UpdatePace are Lua
// compare-and-set scripts on one key; UpdateRequest and UpdatePace run the
// updater in Go and retry a bounded number of times on a conflict. Updates
// of one request made through one Store are also serialized locally, so
// retries happen only between instances. Any failure to reach Redis is
// returned wrapping ciba.ErrUnavailable; a write whose reply was lost is in
// doubt. With Config.WaitReplicas, the writes acknowledged to clients wait
// for that many replicas, and are in doubt when too few confirm
// (durable.go). Open disables the client library's own retries, which could
// otherwise resend a compare-and-set whose reply was lost.
package redisstore

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/store/wakeup"
)

// Defaults and limits.
const (
	// DefaultKeyPrefix is the KeyPrefix when none is configured.
	DefaultKeyPrefix = "cibaproxy:"
	// DefaultRetention is the Retention when none is configured; it matches
	// the default of ciba.expired_grace.
	DefaultRetention = 10 * time.Minute
	// minKeep is the shortest TTL a write gives a request key, so that a
	// write never makes its request vanish at once.
	minKeep = time.Minute
	// maxAttempts bounds the compare-and-set attempts of one update.
	maxAttempts = 50
	// scanCount is the COUNT hint of ListRequests' SCAN.
	scanCount = 256
	// idleCheck is how long the pub/sub connection may stay silent before
	// it is pinged; an unanswered ping replaces the connection.
	idleCheck = 15 * time.Second
	// Reconnection backoff of the pub/sub connection.
	minBackoff = 50 * time.Millisecond
	maxBackoff = 2 * time.Second
)

// Config says how to reach Redis and how to lay out the keys.
type Config struct {
	// Addrs are host:port addresses: one for a standalone server, the
	// Sentinels when MasterName is set, or Cluster nodes when there are
	// several (or Cluster is set).
	Addrs []string
	// MasterName is the Sentinel master name; it selects Sentinel mode.
	MasterName string
	// Cluster selects Cluster mode with a single address (a configuration
	// endpoint).
	Cluster bool
	// Username and Password authenticate with Redis ACLs (Password alone
	// for requirepass). They are never logged.
	Username string
	Password string
	// SentinelUsername and SentinelPassword authenticate with the
	// Sentinels, when they need it.
	SentinelUsername string
	SentinelPassword string
	// DB is the database index (standalone and Sentinel only).
	DB int
	// TLS, when set, makes every connection use TLS with this
	// configuration; LoadTLS builds one from files.
	TLS *tls.Config
	// Timeout bounds each dial, read and write of a connection; default
	// the client library's (5 s to dial, 3 s to read or write).
	Timeout time.Duration
	// KeyPrefix starts every key and the channel name, so that several
	// deployments can share one Redis; default DefaultKeyPrefix.
	KeyPrefix string
	// Retention is how long a request is kept after it expired, so a late
	// poll hears expired_token rather than "unknown". Set it to
	// ciba.expired_grace; default DefaultRetention.
	Retention time.Duration
	// PollCacheSize is how many pending requests an instance remembers to
	// pace polls of without a round trip (pollcache.go); default
	// DefaultPollCacheSize, negative turns the cache off.
	PollCacheSize int
	// WaitReplicas is how many replicas must confirm each acknowledged
	// write (WAIT) before it is reported done, so that it survives the
	// master's death (durable.go); 0 does not wait.
	WaitReplicas int
	// WaitTimeout bounds each WAIT; a write too few replicas confirmed by
	// then is in doubt and reported as ciba.ErrUnavailable. Default
	// DefaultWaitTimeout. It should be shorter than Timeout.
	WaitTimeout time.Duration
}

// Store is the Redis ciba.Store. Open it with Open or NewFromClient; Close
// it when done.
type Store struct {
	c         redis.UniversalClient
	ownClient bool
	prefix    string
	channel   string
	retention time.Duration

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error

	locks keyLocks
	hub   wakeup.Hub // fans the change messages heard out to the subscribers here
	// stop ends the pub/sub loop; listenDone is closed when it returned.
	stop       context.CancelFunc
	listenDone chan struct{}
	// psMu guards ps, the current pub/sub connection, which Close closes
	// to interrupt a blocked read.
	psMu sync.Mutex
	ps   *redis.PubSub
	// polls sends poll scripts in pipelines (batch.go).
	polls *pollBatcher
	// cache is what this instance knows of the pending requests it polled
	// (pollcache.go); cacheDone is closed when its flusher returned.
	cache     *pollCache
	cacheDone chan struct{}
	// heartbeat starts this instance's heartbeats (pollcache.go).
	heartbeat string
	// waitReplicas and waitTimeout are the WAIT after each acknowledged
	// write (durable.go).
	waitReplicas int
	waitTimeout  time.Duration
}

// Compile-time check that Store implements the contract.
var _ ciba.Store = (*Store)(nil)

// Errors returned without formatting.
var (
	errClosed          = fmt.Errorf("redis store: closed: %w", ciba.ErrUnavailable)
	errRequestNotFound = fmt.Errorf("redis store: request: %w", ciba.ErrNotFound)
	errRecordNotFound  = fmt.Errorf("redis store: record: %w", ciba.ErrNotFound)
	errImmutableID     = errors.New("redis store: update request: the updater changed the ID or ApprovalID")
)

// Open connects to Redis as cfg says, checks that it answers and subscribes
// to the change channel. An unreachable Redis is an error wrapping
// ciba.ErrUnavailable.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if len(cfg.Addrs) == 0 {
		return nil, errors.New("redis store: open: no address configured")
	}
	c := redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs:            cfg.Addrs,
		MasterName:       cfg.MasterName,
		IsClusterMode:    cfg.Cluster,
		Username:         cfg.Username,
		Password:         cfg.Password,
		SentinelUsername: cfg.SentinelUsername,
		SentinelPassword: cfg.SentinelPassword,
		DB:               cfg.DB,
		TLSConfig:        cfg.TLS,
		DialTimeout:      cfg.Timeout,
		ReadTimeout:      cfg.Timeout,
		WriteTimeout:     cfg.Timeout,
		// Dialing again is safe (nothing was sent) but delays the answer
		// to a caller while Redis is down: one more attempt only.
		DialerRetries: 2,
		// A resent compare-and-set whose first reply was lost would be
		// applied twice; the Store reports such a write as in doubt instead.
		MaxRetries: -1,
	})
	s, err := newStore(ctx, c, cfg, true)
	if err != nil {
		_ = c.Close() // the open error is the one to report
		return nil, err
	}
	return s, nil
}

// NewFromClient returns a Store on a client the caller made and keeps: Close
// does not close it. Only KeyPrefix, Retention, PollCacheSize, WaitReplicas
// and WaitTimeout of cfg are used. The client
// should not retry commands itself (MaxRetries -1), see the package doc.
func NewFromClient(ctx context.Context, c redis.UniversalClient, cfg Config) (*Store, error) {
	return newStore(ctx, c, cfg, false)
}

func newStore(ctx context.Context, c redis.UniversalClient, cfg Config, own bool) (*Store, error) {
	prefix := cfg.KeyPrefix
	if prefix == "" {
		prefix = DefaultKeyPrefix
	}
	retention := cfg.Retention
	switch {
	case retention == 0:
		retention = DefaultRetention
	case retention < 0:
		return nil, fmt.Errorf("redis store: open: negative retention %v", retention)
	}
	waitTimeout := cfg.WaitTimeout
	switch {
	case cfg.WaitReplicas < 0:
		return nil, fmt.Errorf("redis store: open: negative wait replicas %d", cfg.WaitReplicas)
	case waitTimeout == 0:
		waitTimeout = DefaultWaitTimeout
	case waitTimeout < time.Millisecond:
		return nil, fmt.Errorf("redis store: open: wait timeout %v is under a millisecond", waitTimeout)
	}
	s := &Store{
		c:            c,
		ownClient:    own,
		prefix:       prefix,
		channel:      prefix + "changes",
		retention:    retention,
		waitReplicas: cfg.WaitReplicas,
		waitTimeout:  waitTimeout,
		listenDone:   make(chan struct{}),
		cacheDone:    make(chan struct{}),
		heartbeat:    newHeartbeatPrefix(),
		locks:        keyLocks{m: make(map[string]*keyLock)},
	}
	if err := c.Ping(ctx).Err(); err != nil {
		return nil, unavailable("open", err)
	}
	ps, err := s.subscribe(ctx)
	if err != nil {
		return nil, unavailable("open: subscribe", err)
	}
	s.ps = ps
	lctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	s.stop = stop
	go s.listen(lctx, ps)
	s.polls = newPollBatcher(lctx, c)
	switch size := cfg.PollCacheSize; {
	case size == 0:
		s.cache = newPollCache(DefaultPollCacheSize)
	case size > 0:
		s.cache = newPollCache(size)
	}
	if s.cache != nil {
		go s.runCache(lctx)
	} else {
		close(s.cacheDone)
	}
	return s, nil
}

// unavailable wraps a failure to talk to Redis.
func unavailable(op string, err error) error {
	return fmt.Errorf("redis store: %s: %w: %w", op, ciba.ErrUnavailable, err)
}

// usable reports whether a call may start; writes also need a live context.
func (s *Store) usable(ctx context.Context, op string) error {
	if s.closed.Load() {
		return errClosed
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("redis store: %s: %w", op, err)
	}
	return nil
}

// requestKey is the key of the request hash of id.
func (s *Store) requestKey(id string) string {
	return s.prefix + "{" + id + "}:req"
}

// approvalKey is the key of the ApprovalID index entry of id.
func (s *Store) approvalKey(approvalID string) string {
	return s.prefix + "approval:" + approvalID
}

// recordKey is the key of a record. The length of kind keeps kinds and keys
// apart whatever bytes they contain.
func (s *Store) recordKey(kind, key string) string {
	return s.prefix + "rec:" + strconv.Itoa(len(kind)) + ":" + kind + ":" + key
}

// expiry is when the key of r may be collected, written at now.
func (s *Store) expiry(r *ciba.AuthRequest, now time.Time) time.Time {
	at := r.ExpiresAt.Add(s.retention)
	for _, d := range []ciba.Delivery{r.UserNotice, r.ClientNotice} {
		if d.Pending() {
			next := d.NextAttempt
			if next.Before(now) {
				next = now
			}
			if n := next.Add(s.retention); n.After(at) {
				at = n
			}
		}
	}
	if floor := now.Add(minKeep); at.Before(floor) {
		at = floor
	}
	return at
}

// writeToken returns a random token naming one write.
func writeToken() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// CreateRequest stores a copy of r; an error wrapping ciba.ErrExists if its
// ID or ApprovalID is taken. An empty ApprovalID is not indexed.
func (s *Store) CreateRequest(ctx context.Context, r *ciba.AuthRequest) error {
	const op = "create request"
	if err := s.usable(ctx, op); err != nil {
		return err
	}
	if r == nil || r.ID == "" {
		return errors.New("redis store: create request: the request has no ID")
	}
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("redis store: create request: encode: %w", err)
	}
	exp := s.expiry(r, time.Now()).UnixMilli()
	if r.ApprovalID != "" {
		key := s.approvalKey(r.ApprovalID)
		var cmd *redis.Cmd
		var werr error
		if _, cluster := s.c.(*redis.ClusterClient); cluster {
			// Another slot, perhaps another master: a WAIT of its own.
			cmd, werr = s.doDurable(ctx, key, "SET", key, r.ID, "NX", "PXAT", exp)
		} else {
			// One master replicates in order: the WAIT after the request
			// below covers this earlier write too.
			cmd = s.c.Do(ctx, "SET", key, r.ID, "NX", "PXAT", exp)
		}
		err := cmd.Err()
		if errors.Is(err, redis.Nil) {
			return fmt.Errorf("redis store: create request: ApprovalID: %w", ciba.ErrExists)
		}
		if err != nil {
			return unavailable(op+": index ApprovalID", err)
		}
		if werr != nil {
			// The entry may stay and point nowhere; it expires.
			return inDoubt(op+": index ApprovalID", werr)
		}
	}
	cmd, werr := s.runDurable(ctx, createScript, s.requestKey(r.ID), data, r.ApprovalID, exp, writeToken())
	n, err := cmd.Int()
	if err != nil {
		// In doubt: the request may exist, so its index entry stays; if it
		// does not, the entry points nowhere and expires.
		return unavailable(op, err)
	}
	if n == 1 {
		s.reindex(context.WithoutCancel(ctx), r.ID, nil, r)
		if werr != nil {
			return inDoubt(op, werr)
		}
		return nil
	}
	if r.ApprovalID != "" {
		if err := unindexScript.Run(ctx, s.c, []string{s.approvalKey(r.ApprovalID)}, r.ID).Err(); err != nil {
			return unavailable(op+": release ApprovalID of a refused request", err)
		}
	}
	return fmt.Errorf("redis store: create request: ID: %w", ciba.ErrExists)
}

// decode decodes a stored request.
func decode(data []byte) (*ciba.AuthRequest, error) {
	var r ciba.AuthRequest
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("redis store: decode a stored request: %w", err)
	}
	return &r, nil
}

// GetRequest returns the request with the given auth_req_id; an error
// wrapping ciba.ErrNotFound if there is none. It is one HGET.
func (s *Store) GetRequest(ctx context.Context, id string) (*ciba.AuthRequest, error) {
	if s.closed.Load() {
		return nil, errClosed
	}
	data, err := s.c.HGet(ctx, s.requestKey(id), "d").Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, errRequestNotFound
	}
	if err != nil {
		return nil, unavailable("get request", err)
	}
	return decode(data)
}

// GetRequestByApprovalID returns the request whose ApprovalID is id; an
// error wrapping ciba.ErrNotFound if there is none.
func (s *Store) GetRequestByApprovalID(ctx context.Context, id string) (*ciba.AuthRequest, error) {
	if s.closed.Load() {
		return nil, errClosed
	}
	if id == "" {
		return nil, errRequestNotFound
	}
	reqID, err := s.c.Get(ctx, s.approvalKey(id)).Result()
	if errors.Is(err, redis.Nil) {
		return nil, errRequestNotFound
	}
	if err != nil {
		return nil, unavailable("get request by ApprovalID", err)
	}
	r, err := s.GetRequest(ctx, reqID)
	if err != nil {
		return nil, err
	}
	if r.ApprovalID != id { // a stale index entry
		return nil, errRequestNotFound
	}
	return r, nil
}

// UpdateRequest applies fn to the current request and stores the result
// with a compare-and-set, then publishes the change. On a conflict with
// another instance fn runs again on the new value, up to a bound. If fn
// returns an error nothing is written and that error is returned as is. fn
// must not change ID or ApprovalID (that is an error, and nothing is
// written). The stored result is returned; the caller may modify it.
func (s *Store) UpdateRequest(ctx context.Context, id string, fn func(*ciba.AuthRequest) error) (*ciba.AuthRequest, error) {
	const op = "update request"
	var out *ciba.AuthRequest
	err := s.compareAndSet(ctx, op, "r"+id, id, func(key string) (bool, error) {
		vals, err := s.c.HMGet(ctx, key, "v", "d", "x").Result()
		if err != nil {
			return false, unavailable(op, err)
		}
		version, ok1 := vals[0].(string)
		data, ok2 := vals[1].(string)
		oldExp, _ := vals[2].(string)
		if !ok1 || !ok2 {
			return false, errRequestNotFound
		}
		cur, err := decode([]byte(data))
		if err != nil {
			return false, err
		}
		next := cur.Clone()
		if err := fn(next); err != nil {
			return false, err
		}
		if next.ID != cur.ID || next.ApprovalID != cur.ApprovalID {
			return false, errImmutableID
		}
		enc, err := json.Marshal(next)
		if err != nil {
			return false, fmt.Errorf("redis store: %s: encode: %w", op, err)
		}
		if err := ctx.Err(); err != nil {
			return false, fmt.Errorf("redis store: %s: %w", op, err)
		}
		exp := s.expiry(next, time.Now()).UnixMilli()
		cmd, werr := s.runDurable(ctx, updateScript, key, version, enc, exp, writeToken(), s.channel, id)
		n, err := cmd.Int()
		if err != nil {
			return false, unavailable(op, err)
		}
		switch n {
		case -1:
			return false, errRequestNotFound
		case 0:
			return false, nil
		}
		if old, _ := strconv.ParseInt(oldExp, 10, 64); exp > old && next.ApprovalID != "" {
			// Keep the index as long as the request. Best effort: the
			// update is done, and the index matters only to the approval
			// page, long before this late expiry.
			_ = s.c.PExpireAt(ctx, s.approvalKey(next.ApprovalID), time.UnixMilli(exp)).Err()
		}
		s.reindex(context.WithoutCancel(ctx), id, cur, next)
		if werr != nil {
			return false, inDoubt(op, werr)
		}
		out = next
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// compareAndSet runs attempt, one compare-and-set of request id's hash
// (whose key it is given), until attempt reports it done or fails, backing
// off between attempts; after maxAttempts conflicts it fails with
// ciba.ErrUnavailable. It holds this instance's lock lockName throughout,
// and the poll cache forgets id before and after the write: a poll read in
// between may not be remembered (the cache's generation), and the change
// message reaches the other instances.
func (s *Store) compareAndSet(ctx context.Context, op, lockName, id string, attempt func(key string) (done bool, err error)) error {
	if err := s.usable(ctx, op); err != nil {
		return err
	}
	unlock, err := s.locks.lock(ctx, lockName)
	if err != nil {
		return fmt.Errorf("redis store: %s: %w", op, err)
	}
	defer unlock()
	s.forget(id)
	defer s.forget(id)
	key := s.requestKey(id)
	for n := range maxAttempts {
		if n > 0 {
			if err := backoff(ctx, n); err != nil {
				return fmt.Errorf("redis store: %s: %w", op, err)
			}
		}
		if done, err := attempt(key); done || err != nil {
			return err
		}
	}
	return fmt.Errorf("redis store: %s: %w: %d conflicting writes in a row", op, ciba.ErrUnavailable, maxAttempts)
}

// backoff waits a random time that grows with attempt, or until ctx is done.
func backoff(ctx context.Context, attempt int) error {
	limit := min(time.Millisecond<<min(attempt, 6), 50*time.Millisecond)
	t := time.NewTimer(mrand.N(limit) + time.Microsecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// DeleteRequest removes the request, its pace state and its ApprovalID, and
// publishes the change; an error wrapping ciba.ErrNotFound if there is none.
func (s *Store) DeleteRequest(ctx context.Context, id string) error {
	const op = "delete request"
	if err := s.usable(ctx, op); err != nil {
		return err
	}
	s.forget(id)
	defer s.forget(id)
	res, err := deleteScript.Run(ctx, s.c, []string{s.requestKey(id)}, s.channel, id).Text()
	if errors.Is(err, redis.Nil) {
		return errRequestNotFound
	}
	if err != nil {
		return unavailable(op, err)
	}
	s.reindex(context.WithoutCancel(ctx), id, nil, nil)
	if res != "" {
		if err := unindexScript.Run(ctx, s.c, []string{s.approvalKey(res)}, id).Err(); err != nil {
			return unavailable(op+": release ApprovalID (the request is deleted)", err)
		}
	}
	return nil
}

// ListRequests calls fn with every stored request until fn returns false.
// It SCANs the request keys of every master, so it may miss a request
// created meanwhile; it remembers the IDs it gave, so that none is given
// twice.
func (s *Store) ListRequests(ctx context.Context, fn func(*ciba.AuthRequest) bool) error {
	const op = "list requests"
	if s.closed.Load() {
		return errClosed
	}
	var nodes []redis.UniversalClient
	if cc, ok := s.c.(*redis.ClusterClient); ok {
		var mu sync.Mutex
		if err := cc.ForEachMaster(ctx, func(_ context.Context, c *redis.Client) error {
			mu.Lock()
			nodes = append(nodes, c)
			mu.Unlock()
			return nil
		}); err != nil {
			return unavailable(op, err)
		}
	} else {
		nodes = []redis.UniversalClient{s.c}
	}
	pattern := globEscape(s.prefix) + "{*}:req"
	seen := make(map[string]struct{})
	for _, node := range nodes {
		more, err := s.scanNode(ctx, node, pattern, seen, fn)
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// scanNode visits the requests of one node; it reports whether fn wants
// more.
func (s *Store) scanNode(ctx context.Context, c redis.UniversalClient, pattern string, seen map[string]struct{}, fn func(*ciba.AuthRequest) bool) (bool, error) {
	const op = "list requests"
	var cursor uint64
	for {
		if s.closed.Load() {
			return false, errClosed
		}
		if err := ctx.Err(); err != nil {
			return false, fmt.Errorf("redis store: %s: %w", op, err)
		}
		keys, next, err := c.Scan(ctx, cursor, pattern, scanCount).Result()
		if err != nil {
			return false, unavailable(op, err)
		}
		if len(keys) > 0 {
			cmds := make([]*redis.StringCmd, len(keys))
			pipe := c.Pipeline()
			for i, k := range keys {
				cmds[i] = pipe.HGet(ctx, k, "d")
			}
			if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
				return false, unavailable(op, err)
			}
			for _, cmd := range cmds {
				data, err := cmd.Bytes()
				if errors.Is(err, redis.Nil) {
					continue // deleted since the SCAN
				}
				if err != nil {
					return false, unavailable(op, err)
				}
				r, err := decode(data)
				if err != nil {
					return false, err
				}
				if _, dup := seen[r.ID]; dup {
					continue
				}
				seen[r.ID] = struct{}{}
				if !fn(r) {
					return false, nil
				}
			}
		}
		if next == 0 {
			return true, nil
		}
		cursor = next
	}
}

// globEscape escapes the glob metacharacters of MATCH patterns.
func globEscape(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		switch c {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteByte(c)
	}
	return b.String()
}

// UpdatePace applies fn to the pace state of request id atomically and
// returns the result; an error wrapping ciba.ErrNotFound if there is no such
// request. A request with no pace state yet gets a zero Pace. If fn returns
// an error nothing is written and that error is returned as is.
func (s *Store) UpdatePace(ctx context.Context, id string, fn func(p *ciba.Pace) error) (ciba.Pace, error) {
	const op = "update pace"
	var out ciba.Pace
	err := s.compareAndSet(ctx, op, "p"+id, id, func(key string) (bool, error) {
		vals, err := s.c.HMGet(ctx, key, "v", "p").Result()
		if err != nil {
			return false, unavailable(op, err)
		}
		if _, ok := vals[0].(string); !ok {
			return false, errRequestNotFound
		}
		old, _ := vals[1].(string)
		p := decodePace(old)
		if err := fn(&p); err != nil {
			return false, err
		}
		n, err := paceScript.Run(ctx, s.c, []string{key}, old, encodePace(p)).Int()
		if err != nil {
			return false, unavailable(op, err)
		}
		switch n {
		case -1:
			return false, errRequestNotFound
		case 1:
			out = p
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		return ciba.Pace{}, err
	}
	return out, nil
}

// checkKind rejects kinds the other backends could not keep apart from the
// key, so that every backend accepts the same records.
func checkKind(kind string) error {
	if kind == "" || strings.IndexByte(kind, 0) >= 0 {
		return fmt.Errorf("record kind %q is empty or contains NUL", kind)
	}
	return nil
}

// PutRecord stores value under kind and key for ttl (0: forever); an error
// wrapping ciba.ErrExists if the key holds an unexpired record. It is one
// SET NX PX.
func (s *Store) PutRecord(ctx context.Context, kind, key string, value []byte, ttl time.Duration) error {
	const op = "put record"
	if err := s.usable(ctx, op); err != nil {
		return err
	}
	if err := checkKind(kind); err != nil {
		return fmt.Errorf("redis store: %s: %w", op, err)
	}
	if ttl < 0 {
		return fmt.Errorf("redis store: %s: negative lifetime %v", op, ttl)
	}
	rk := s.recordKey(kind, key)
	args := []any{"SET", rk, value, "NX"}
	if ttl > 0 {
		ms := (ttl + time.Millisecond - 1) / time.Millisecond // at least 1
		args = append(args, "PX", int64(ms))
	}
	cmd, werr := s.doDurable(ctx, rk, args...)
	err := cmd.Err()
	if errors.Is(err, redis.Nil) {
		return fmt.Errorf("redis store: %s: %w", op, ciba.ErrExists)
	}
	if err != nil {
		return unavailable(op, err)
	}
	if werr != nil {
		return inDoubt(op, werr)
	}
	return nil
}

// GetRecord returns the record stored under kind and key; an error wrapping
// ciba.ErrNotFound if there is none or it expired.
func (s *Store) GetRecord(ctx context.Context, kind, key string) ([]byte, error) {
	if s.closed.Load() {
		return nil, errClosed
	}
	v, err := s.c.Get(ctx, s.recordKey(kind, key)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, errRecordNotFound
	}
	if err != nil {
		return nil, unavailable("get record", err)
	}
	return v, nil
}

// TakeRecord returns and deletes the record stored under kind and key (one
// GETDEL); an error wrapping ciba.ErrNotFound if there is none or it expired.
func (s *Store) TakeRecord(ctx context.Context, kind, key string) ([]byte, error) {
	const op = "take record"
	if err := s.usable(ctx, op); err != nil {
		return nil, err
	}
	rk := s.recordKey(kind, key)
	if s.waitReplicas == 0 {
		v, err := s.c.GetDel(ctx, rk).Bytes()
		if errors.Is(err, redis.Nil) {
			return nil, errRecordNotFound
		}
		if err != nil {
			return nil, unavailable(op, err)
		}
		return v, nil
	}
	cmd, werr := s.doDurable(ctx, rk, "GETDEL", rk)
	v, err := cmd.Text()
	if errors.Is(err, redis.Nil) {
		return nil, errRecordNotFound
	}
	if err != nil {
		return nil, unavailable(op, err)
	}
	if werr != nil {
		// Taken here, but a failover could bring it back: not taken.
		return nil, inDoubt(op, werr)
	}
	return []byte(v), nil
}

// SwapRecord replaces the record under kind and key by new if it holds old
// (nil: absent or expired), in one script; a nil new deletes it. What it
// writes has no lifetime (ciba.Store.SwapRecord).
func (s *Store) SwapRecord(ctx context.Context, kind, key string, old, new []byte) (bool, error) {
	const op = "swap record"
	if err := s.usable(ctx, op); err != nil {
		return false, err
	}
	if err := checkKind(kind); err != nil {
		return false, fmt.Errorf("redis store: %s: %w", op, err)
	}
	flag := func(b []byte) string {
		if b == nil {
			return "0"
		}
		return "1"
	}
	rk := s.recordKey(kind, key)
	cmd, werr := s.runDurable(ctx, swapScript, rk, flag(old), old, flag(new), new)
	n, err := cmd.Int64()
	if err != nil {
		return false, unavailable(op, err)
	}
	if werr != nil {
		return false, inDoubt(op, werr)
	}
	return n == 1, nil
}

// Close stops the subscription loop and, for a Store made by Open, closes
// the client. Every later call fails with an error wrapping
// ciba.ErrUnavailable. It may be called more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.stop()
		s.psMu.Lock()
		if s.ps != nil {
			_ = s.ps.Close() // interrupts a blocked read; nothing to report
		}
		s.psMu.Unlock()
		<-s.listenDone
		<-s.cacheDone // after its last flush
		if s.ownClient {
			if err := s.c.Close(); err != nil {
				s.closeErr = fmt.Errorf("redis store: close: %w", err)
			}
		}
	})
	return s.closeErr
}

// keyLocks serializes the updates of one key made through one Store, so
// that they do not conflict with each other in Redis.
type keyLocks struct {
	mu sync.Mutex
	m  map[string]*keyLock
}

// keyLock is a lock that a waiter can give up on; refs counts holders and
// waiters, so the entry is dropped when nobody needs it.
type keyLock struct {
	ch   chan struct{}
	refs int
}

// lock takes the lock of key and returns its release, or ctx's error.
func (k *keyLocks) lock(ctx context.Context, key string) (func(), error) {
	k.mu.Lock()
	l := k.m[key]
	if l == nil {
		l = &keyLock{ch: make(chan struct{}, 1)}
		k.m[key] = l
	}
	l.refs++
	k.mu.Unlock()
	release := func() {
		k.mu.Lock()
		l.refs--
		if l.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
	select {
	case l.ch <- struct{}{}:
		return func() { <-l.ch; release() }, nil
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	}
}
