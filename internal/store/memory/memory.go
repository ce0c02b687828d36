// Package memory is the in-memory ciba.Store. On its own it is the backend
// for tests and single-process experiments: nothing survives a restart. It is
// also the hot-path core of the embedded backend, which gives it a Journal:
// every write is made durable by the journal before it is applied in memory
// and acknowledged, and every read is served from memory without I/O.
//
// State is sharded by a hash of the key, with a lock per shard, so that polls
// of different requests do not contend on one lock. A request's current value
// is an immutable snapshot behind an atomic pointer: readers never wait for a
// writer, and a writer that waits for its journal holds only the lock of the
// one request it changes. Snapshots are kept encoded, one string each
// (codec.go), so that the garbage collector has little to mark however many
// requests are pending.
package memory

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/store/wakeup"
)

// shardCount is the number of shards of each map; a power of two.
const shardCount = 64

// Journal is the durable write-through hook of a Store. The Store calls it
// before it changes memory and acknowledges a write only when it returned nil;
// when it fails, memory is left unchanged and its error is returned, wrapped.
//
// Calls for the same request or record key never overlap; calls for different
// keys do, so an implementation may combine concurrent calls into one commit.
// An implementation must not keep or modify the request or slice it is given.
// It should return an error wrapping ciba.ErrUnavailable when its medium
// failed, so callers answer temporarily_unavailable.
//
// Poll pacing (ciba.Pace) and subscriptions are never journaled.
type Journal interface {
	// PutRequest writes r, replacing any request with the same ID.
	PutRequest(ctx context.Context, r *ciba.AuthRequest) error
	// DeleteRequest removes the request with the given ID, if present.
	DeleteRequest(ctx context.Context, id string) error
	// PutRecord writes a record, replacing any record with the same kind and
	// key. A zero expiresAt means the record never expires.
	PutRecord(ctx context.Context, kind, key string, value []byte, expiresAt time.Time) error
	// DeleteRecord removes a record, if present.
	DeleteRecord(ctx context.Context, kind, key string) error
}

// Option configures a Store.
type Option func(*Store)

// WithJournal makes every write go through j before it is acknowledged.
func WithJournal(j Journal) Option {
	return func(s *Store) { s.journal = j }
}

// Errors returned without formatting on paths that must not allocate much.
var (
	errClosed          = fmt.Errorf("memory store: closed: %w", ciba.ErrUnavailable)
	errRequestNotFound = fmt.Errorf("memory store: request: %w", ciba.ErrNotFound)
	errRecordNotFound  = fmt.Errorf("memory store: record: %w", ciba.ErrNotFound)
	errImmutableID     = errors.New("memory store: update request: the updater changed the ID or ApprovalID")
)

// recordSweepEvery is how many PutRecord calls on a shard trigger a sweep of
// its expired records.
const recordSweepEvery = 256

// Store is an in-memory ciba.Store, optionally writing through a Journal.
// Its zero value is not usable; call New.
type Store struct {
	journal Journal
	// seed and seed2 hash ids into keys (key).
	seed, seed2 maphash.Seed
	closed      atomic.Bool
	// paces holds *ciba.Pace scratch values for UpdatePace's updaters (a
	// long poll's release), so that it allocates none; the poll itself
	// paces in Poll.
	paces sync.Pool

	requests  [shardCount]requestShard
	approvals [shardCount]approvalShard
	subs      [shardCount]subShard
	records   [shardCount]recordShard
}

// Compile-time check that Store implements the contract.
var _ ciba.Store = (*Store)(nil)

// requestEntry holds one request. Its value is replaced, never modified, so a
// reader may use a snapshot without a lock.
type requestEntry struct {
	// mu is held by the one writer of this request, across its journal write.
	mu sync.Mutex
	// cur is the acknowledged request, encoded (snapshotOf; read with
	// snapshot): nil while its creation is not yet durable and after its
	// deletion. What it points to is never modified.
	cur atomic.Pointer[byte]
	// paceMu guards pace, the request's poll pace state (never journaled),
	// apart from mu so that polls never wait for a journal write.
	paceMu sync.Mutex
	pace   pace
}

// pace is ciba.Pace without pointers (times as Unix nanoseconds, 0 for
// none), so that the collector has nothing to follow in it.
type pace struct {
	interval, notBefore, holdUntil int64
}

func (p pace) get() ciba.Pace {
	return ciba.Pace{Interval: time.Duration(p.interval), NotBefore: unixNano(p.notBefore), HoldUntil: unixNano(p.holdUntil)}
}

func toPace(p ciba.Pace) pace {
	return pace{interval: int64(p.Interval), notBefore: nanos(p.NotBefore), holdUntil: nanos(p.HoldUntil)}
}

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func unixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// key is a 128-bit hash of a request id or approval id, under the store's
// secret seeds: the request maps are keyed by it rather than by the id
// itself, which would be one more heap object per request for the
// collector to mark. An entry found by key is used only if the id in its
// snapshot is the one looked up, so a collision (never seen at 128 bits)
// could only make a request unreachable, never hand out another one.
type key [2]uint64

// key returns the key of id.
func (s *Store) key(id string) key {
	return key{maphash.String(s.seed, id), maphash.String(s.seed2, id)}
}

// shard returns the shard index of a key.
func (k key) shard() int { return int(k[0] & (shardCount - 1)) }

// requestShard maps auth_req_ids (by key) to entries, and allocates them.
type requestShard struct {
	mu sync.RWMutex
	m  map[key]*requestEntry
	// Entries are allocated in chunks (chunk is what is left of the
	// current one) and reused once unlinked (free), so that the collector
	// marks one object per chunk rather than one per request. A stale
	// holder of a reused entry finds another request's snapshot, or none,
	// and reads it as deleted: every use of an entry checks the id in its
	// snapshot (is).
	chunk []requestEntry
	next  int // the size of the next chunk
	free  []*requestEntry
	_     [64]byte // keeps neighbouring shards' locks on separate cache lines
}

// Entry chunks grow from firstChunk to maxChunk entries, so that a store
// holding few requests allocates little.
const (
	firstChunk = 16
	maxChunk   = 1024
)

// alloc returns an entry for a new request, locked (mu) and with no pace
// state. The caller holds sh.mu.
func (sh *requestShard) alloc() *requestEntry {
	// The entry freed last may still be locked for a moment: by the
	// deleter, or by a stale holder finding it deleted. It is then left for
	// a later request rather than waited for under the shard lock.
	if n := len(sh.free); n > 0 && sh.free[n-1].mu.TryLock() {
		e := sh.free[n-1]
		sh.free[n-1] = nil
		sh.free = sh.free[:n-1]
		e.paceMu.Lock()
		e.pace = pace{}
		e.paceMu.Unlock()
		return e
	}
	if len(sh.chunk) == 0 {
		sh.next = min(max(2*sh.next, firstChunk), maxChunk)
		sh.chunk = make([]requestEntry, sh.next)
	}
	e := &sh.chunk[0]
	sh.chunk = sh.chunk[1:]
	e.mu.Lock() // new, so this never waits
	return e
}

// approvalShard maps ApprovalIDs (by key) to entries. Where both are held,
// the approval shard lock is taken before the request shard lock.
type approvalShard struct {
	mu sync.RWMutex
	m  map[key]*requestEntry
	_  [64]byte
}

// subShard holds the subscribers of the requests of one request shard.
type subShard struct {
	wakeup.Hub
	_ [64]byte
}

// recordKey is the namespaced key of a record.
type recordKey struct{ kind, key string }

// recordEntry holds one record.
type recordEntry struct {
	// mu is held by the one writer of this record, across its journal write,
	// and by readers.
	mu        sync.Mutex
	value     []byte
	expiresAt time.Time // zero: never
	// live is set while the entry holds an acknowledged value (which may
	// have expired).
	live bool
	// gone is set once the entry is no longer in its shard's map; a writer
	// that finds it set looks the key up again.
	gone bool
}

// recordShard maps record keys to entries.
type recordShard struct {
	mu   sync.Mutex
	m    map[recordKey]*recordEntry
	puts uint32 // PutRecord calls since the last sweep
	_    [64]byte
}

// New returns an empty Store.
func New(opts ...Option) *Store {
	s := &Store{seed: maphash.MakeSeed(), seed2: maphash.MakeSeed()}
	s.paces.New = func() any { return new(ciba.Pace) }
	for _, o := range opts {
		o(s)
	}
	for i := range shardCount {
		s.requests[i].m = make(map[key]*requestEntry)
		s.approvals[i].m = make(map[key]*requestEntry)
		s.records[i].m = make(map[recordKey]*recordEntry)
	}
	return s
}

// shard returns the shard index of a request id (for subscriptions).
func (s *Store) shard(id string) int {
	return int(maphash.String(s.seed, id) & (shardCount - 1))
}

// recordShard returns the shard of a record key.
func (s *Store) recordShard(k recordKey) *recordShard {
	h := maphash.String(s.seed, k.key) ^ (maphash.String(s.seed, k.kind) * 31)
	return &s.records[h&(shardCount-1)]
}

// entry returns the entry that request id's key maps to, or nil. Its
// snapshot's id must still be checked (is).
func (s *Store) entry(id string) *requestEntry {
	k := s.key(id)
	sh := &s.requests[k.shard()]
	sh.mu.RLock()
	e := sh.m[k]
	sh.mu.RUnlock()
	return e
}

// is reports whether enc, a snapshot found by key, is request id's.
func is(enc *byte, id string) bool {
	got, _ := encodedIDs(snapshot(enc))
	return got == id
}

// current returns the acknowledged request id, encoded, or nil.
func (s *Store) current(id string) *byte {
	if e := s.entry(id); e != nil {
		if enc := e.cur.Load(); enc != nil && is(enc, id) {
			return enc
		}
	}
	return nil
}

// decode decodes a stored request; failing is a bug (only this package
// encodes), reported as an error rather than a crash.
func decode(enc *byte) (*ciba.AuthRequest, error) { return decodeRequest(snapshot(enc)) }

// usable reports whether a write may start.
func (s *Store) usable(ctx context.Context) error {
	if s.closed.Load() {
		return errClosed
	}
	return ctx.Err()
}

// journalError wraps a failure of the journal.
func journalError(op string, err error) error {
	return fmt.Errorf("memory store: %s: journal: %w", op, err)
}

// CreateRequest stores a copy of r; an error wrapping ciba.ErrExists if its
// ID or ApprovalID is taken. An empty ApprovalID is not indexed.
func (s *Store) CreateRequest(ctx context.Context, r *ciba.AuthRequest) error {
	if err := s.usable(ctx); err != nil {
		return fmt.Errorf("memory store: create request: %w", err)
	}
	return s.insert(ctx, "create request", r, true)
}

// insert stores a copy of r in a new entry, journaling it first when
// journal is set and the store has a journal; op names the operation in
// errors. An error wraps ciba.ErrExists if r's ID or ApprovalID is taken.
func (s *Store) insert(ctx context.Context, op string, r *ciba.AuthRequest, journal bool) error {
	if r == nil || r.ID == "" {
		return fmt.Errorf("memory store: %s: the request has no ID", op)
	}
	enc := snapshotOf(r)
	e, err := s.reserve(r.ID, r.ApprovalID)
	if err != nil {
		return fmt.Errorf("memory store: %s: %w", op, err)
	}
	if journal && s.journal != nil {
		if err := s.journal.PutRequest(ctx, r); err != nil {
			s.unlink(e, r.ID, r.ApprovalID)
			e.mu.Unlock()
			return journalError(op, err)
		}
	}
	e.cur.Store(enc)
	e.mu.Unlock()
	return nil
}

// reserve claims id and approvalID with a new entry, which it returns
// locked and empty: readers do not see the request until the caller stores
// it in the entry.
func (s *Store) reserve(id, approvalID string) (*requestEntry, error) {
	var as *approvalShard
	var ak key
	if approvalID != "" {
		ak = s.key(approvalID)
		as = &s.approvals[ak.shard()]
		as.mu.Lock()
		defer as.mu.Unlock()
	}
	k := s.key(id)
	rs := &s.requests[k.shard()]
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if _, ok := rs.m[k]; ok {
		return nil, fmt.Errorf("request ID: %w", ciba.ErrExists)
	}
	if as != nil {
		if _, ok := as.m[ak]; ok {
			return nil, fmt.Errorf("request ApprovalID: %w", ciba.ErrExists)
		}
	}
	e := rs.alloc()
	rs.m[k] = e
	if as != nil {
		as.m[ak] = e
	}
	return e, nil
}

// unlink removes entry e of request id from the maps. The caller holds e.mu.
func (s *Store) unlink(e *requestEntry, id, approvalID string) {
	if approvalID != "" {
		ak := s.key(approvalID)
		as := &s.approvals[ak.shard()]
		as.mu.Lock()
		defer as.mu.Unlock()
		if as.m[ak] == e {
			delete(as.m, ak)
		}
	}
	k := s.key(id)
	rs := &s.requests[k.shard()]
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.m[k] == e {
		delete(rs.m, k)
		rs.free = append(rs.free, e)
	}
}

// GetRequest returns a copy of the request with the given auth_req_id; an
// error wrapping ciba.ErrNotFound if there is none.
func (s *Store) GetRequest(_ context.Context, id string) (*ciba.AuthRequest, error) {
	if s.closed.Load() {
		return nil, errClosed
	}
	if enc := s.current(id); enc != nil {
		return decode(enc)
	}
	return nil, errRequestNotFound
}

// Poll answers a poll of request id (ciba.Store.Poll) under the request's
// pace lock: the checks read the encoded request in place and the pace is
// applied in memory, so a poll of a pending request allocates nothing; only
// a request no longer pending is decoded. Pace state is never journaled.
func (s *Store) Poll(_ context.Context, id string, q ciba.PollQuery) (ciba.PollResult, error) {
	if s.closed.Load() {
		return ciba.PollResult{}, errClosed
	}
	e, enc := s.lockPace(id)
	if e == nil {
		return ciba.PollResult{}, nil
	}
	v, err := pollView(snapshot(enc))
	if err != nil {
		e.paceMu.Unlock()
		return ciba.PollResult{}, fmt.Errorf("memory store: poll: %w", err)
	}
	switch out := q.Check(&v); {
	case out == ciba.PollDone:
		e.paceMu.Unlock()
		r, err := decode(enc)
		if err != nil {
			return ciba.PollResult{}, fmt.Errorf("memory store: poll: %w", err)
		}
		return ciba.PollResult{Outcome: ciba.PollDone, Request: r}, nil
	case out != ciba.PollPending, q.CheckOnly:
		e.paceMu.Unlock()
		return ciba.PollResult{Outcome: out}, nil
	}
	p := e.pace.get()
	slow := q.RuleFor(&v).Apply(&p)
	e.pace = toPace(p)
	e.paceMu.Unlock()
	if slow {
		return ciba.PollResult{Outcome: ciba.PollSlow, Interval: p.Interval}, nil
	}
	return ciba.PollResult{Outcome: ciba.PollPending, Hold: q.HoldFor(v.ExpiresAt)}, nil
}

// lockPace returns the entry of request id with its pace lock held, and the
// request's current encoding; nil and no lock held when there is no such
// request. The request is looked for under the pace lock, so a deleted
// request's pace is never changed after DeleteRequest returned.
func (s *Store) lockPace(id string) (*requestEntry, *byte) {
	e := s.entry(id)
	if e == nil {
		return nil, nil
	}
	e.paceMu.Lock()
	enc := e.cur.Load()
	if enc == nil || !is(enc, id) {
		e.paceMu.Unlock()
		return nil, nil
	}
	return e, enc
}

// GetRequestByApprovalID returns a copy of the request whose ApprovalID is
// id; an error wrapping ciba.ErrNotFound if there is none.
func (s *Store) GetRequestByApprovalID(_ context.Context, id string) (*ciba.AuthRequest, error) {
	if s.closed.Load() {
		return nil, errClosed
	}
	if id == "" {
		return nil, errRequestNotFound
	}
	ak := s.key(id)
	as := &s.approvals[ak.shard()]
	as.mu.RLock()
	e := as.m[ak]
	as.mu.RUnlock()
	if e != nil {
		if enc := e.cur.Load(); enc != nil {
			if _, approvalID := encodedIDs(snapshot(enc)); approvalID == id {
				return decode(enc)
			}
		}
	}
	return nil, errRequestNotFound
}

// UpdateRequest applies fn to a copy of the request and stores the result
// atomically, then wakes the request's subscribers. Updates of one request
// are serialized, so fn runs exactly once per call and always on the current
// value. If fn returns an error nothing is written and that error is returned
// as is. fn must not change ID or ApprovalID (that is an error, and nothing
// is written), must not call the Store, and must not keep the request after
// it returns. The stored result is returned; the caller may modify it.
func (s *Store) UpdateRequest(ctx context.Context, id string, fn func(*ciba.AuthRequest) error) (*ciba.AuthRequest, error) {
	if err := s.usable(ctx); err != nil {
		return nil, fmt.Errorf("memory store: update request: %w", err)
	}
	i := s.shard(id)
	e := s.entry(id)
	if e == nil {
		return nil, errRequestNotFound
	}
	e.mu.Lock()
	enc := e.cur.Load()
	if enc == nil || !is(enc, id) { // deleted while we waited
		e.mu.Unlock()
		return nil, errRequestNotFound
	}
	next, err := decode(enc)
	if err != nil {
		e.mu.Unlock()
		return nil, fmt.Errorf("memory store: update request: %w", err)
	}
	id0, approvalID0 := next.ID, next.ApprovalID
	if err := fn(next); err != nil {
		e.mu.Unlock()
		return nil, err
	}
	if next.ID != id0 || next.ApprovalID != approvalID0 {
		e.mu.Unlock()
		return nil, errImmutableID
	}
	// The stored snapshot is an encoding of next: fn's value goes back to
	// the caller.
	stored := snapshotOf(next)
	if s.journal != nil {
		if err := s.journal.PutRequest(ctx, next); err != nil {
			e.mu.Unlock()
			return nil, journalError("update request", err)
		}
	}
	e.cur.Store(stored)
	e.mu.Unlock()
	s.wake(i, id)
	return next, nil
}

// DeleteRequest removes the request, its ApprovalID and its pace state, then
// wakes its subscribers; an error wrapping ciba.ErrNotFound if there is none.
func (s *Store) DeleteRequest(ctx context.Context, id string) error {
	if err := s.usable(ctx); err != nil {
		return fmt.Errorf("memory store: delete request: %w", err)
	}
	i := s.shard(id)
	e := s.entry(id)
	if e == nil {
		return errRequestNotFound
	}
	e.mu.Lock()
	enc := e.cur.Load()
	if enc == nil || !is(enc, id) {
		e.mu.Unlock()
		return errRequestNotFound
	}
	curID, curApprovalID := encodedIDs(snapshot(enc))
	if s.journal != nil {
		if err := s.journal.DeleteRequest(ctx, id); err != nil {
			e.mu.Unlock()
			return journalError("delete request", err)
		}
	}
	// From here on every reader gets ErrNotFound; the pace state goes with
	// the entry (a new request with the same id gets a new entry).
	e.cur.Store(nil)
	s.unlink(e, curID, curApprovalID)
	e.mu.Unlock()
	s.wake(i, id)
	return nil
}

// ListRequests calls fn with a copy of every stored request until fn returns
// false. It copies one shard's requests at a time and calls fn without a
// lock held, so fn may use the Store; a request created or deleted meanwhile
// may or may not be seen.
func (s *Store) ListRequests(ctx context.Context, fn func(*ciba.AuthRequest) bool) error {
	return s.eachSnapshot(ctx, "list requests", func(enc *byte) (bool, error) {
		r, err := decode(enc)
		if err != nil {
			return false, err
		}
		return fn(r), nil
	})
}

// ListSweep calls fn with the sweep's view of every stored request
// (ciba.Store.ListSweep) until fn returns false, without building the
// requests; fn must not keep v or its strings. Like ListRequests, it reads
// one shard at a time and calls fn without a lock held.
func (s *Store) ListSweep(ctx context.Context, fn func(v *ciba.SweepView) bool) error {
	var v ciba.SweepView
	return s.eachSnapshot(ctx, "list sweep", func(enc *byte) (bool, error) {
		if err := sweepView(snapshot(enc), &v); err != nil {
			return false, err
		}
		return fn(&v), nil
	})
}

// eachSnapshot calls fn with the snapshot of every stored request until fn
// returns false or an error (wrapped with op). It collects one shard's
// snapshots under its read lock and calls fn without a lock held.
func (s *Store) eachSnapshot(ctx context.Context, op string, fn func(enc *byte) (bool, error)) error {
	var batch []*byte
	for i := range s.requests {
		if s.closed.Load() {
			return errClosed
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("memory store: %s: %w", op, err)
		}
		sh := &s.requests[i]
		batch = batch[:0]
		sh.mu.RLock()
		for _, e := range sh.m {
			if enc := e.cur.Load(); enc != nil {
				batch = append(batch, enc)
			}
		}
		sh.mu.RUnlock()
		for _, enc := range batch {
			more, err := fn(enc)
			if err != nil {
				return fmt.Errorf("memory store: %s: %w", op, err)
			}
			if !more {
				return nil
			}
		}
	}
	return nil
}

// UpdatePace applies fn to the pace state of request id atomically and
// returns the result; an error wrapping ciba.ErrNotFound if there is no such
// request. A request with no pace state yet gets a zero Pace. If fn returns
// an error nothing is written and that error is returned as is. fn must not
// keep p or call the Store. Pace state is never journaled.
func (s *Store) UpdatePace(_ context.Context, id string, fn func(p *ciba.Pace) error) (ciba.Pace, error) {
	if s.closed.Load() {
		return ciba.Pace{}, errClosed
	}
	e, _ := s.lockPace(id)
	if e == nil {
		return ciba.Pace{}, errRequestNotFound
	}
	defer e.paceMu.Unlock()
	p := s.paces.Get().(*ciba.Pace)
	defer s.paces.Put(p)
	*p = e.pace.get()
	if err := fn(p); err != nil {
		return ciba.Pace{}, err
	}
	e.pace = toPace(*p)
	return *p, nil
}

// ListDue lists nothing: no other process shares this store, so no other
// dispatcher leaves deliveries to take over (ciba.Store.ListDue).
func (s *Store) ListDue(context.Context, time.Time, func(id string) bool) error {
	if s.closed.Load() {
		return errClosed
	}
	return nil
}

// Subscribe returns a channel that receives a value after every successful
// UpdateRequest or DeleteRequest of request id, and a function to stop
// listening, which may be called more than once. The channel holds one
// value: changes made while the subscriber is not reading coalesce, and a
// slow subscriber never blocks a writer. The channel is never closed.
func (s *Store) Subscribe(id string) (<-chan struct{}, func()) {
	return s.subs[s.shard(id)].Subscribe(id)
}

// wake makes a non-blocking send to every subscriber of request id, of
// shard i.
func (s *Store) wake(i int, id string) { s.subs[i].Wake(id) }

// checkRecordKey rejects kinds that a backend could not keep apart from the
// key: the embedded store joins them with a NUL byte.
func checkRecordKey(kind string) error {
	if kind == "" || strings.IndexByte(kind, 0) >= 0 {
		return fmt.Errorf("record kind %q is empty or contains NUL", kind)
	}
	return nil
}

// expired reports whether a record with expiry at is gone at now.
func expired(at, now time.Time) bool {
	return !at.IsZero() && !now.Before(at)
}

// PutRecord stores a copy of value under kind and key for ttl (0: forever);
// an error wrapping ciba.ErrExists if the key holds an unexpired record.
func (s *Store) PutRecord(ctx context.Context, kind, key string, value []byte, ttl time.Duration) error {
	if err := s.usable(ctx); err != nil {
		return fmt.Errorf("memory store: put record: %w", err)
	}
	if err := checkRecordKey(kind); err != nil {
		return fmt.Errorf("memory store: put record: %w", err)
	}
	if ttl < 0 {
		return fmt.Errorf("memory store: put record: negative lifetime %v", ttl)
	}
	now := time.Now()
	var exp time.Time
	if ttl > 0 {
		exp = now.Add(ttl)
	}
	k := recordKey{kind, key}
	sh := s.recordShard(k)
	e, sweep := s.lockRecord(sh, k)
	defer func() {
		if sweep {
			s.sweepRecords(sh)
		}
	}()
	if e.live && !expired(e.expiresAt, now) {
		e.mu.Unlock()
		return fmt.Errorf("memory store: put record: %w", ciba.ErrExists)
	}
	if s.journal != nil {
		if err := s.journal.PutRecord(ctx, kind, key, value, exp); err != nil {
			if !e.live {
				unlinkRecord(sh, k, e)
			}
			e.mu.Unlock()
			return journalError("put record", err)
		}
	}
	e.value = bytes.Clone(value)
	e.expiresAt = exp
	e.live = true
	e.mu.Unlock()
	return nil
}

// lockRecord returns the entry of k, created if absent, locked. It also
// reports whether the shard is due for a sweep.
func (s *Store) lockRecord(sh *recordShard, k recordKey) (e *recordEntry, sweep bool) {
	for {
		sh.mu.Lock()
		e = sh.m[k]
		if e == nil {
			e = &recordEntry{}
			e.mu.Lock() // new, so this never waits
			sh.m[k] = e
			sh.puts++
			sweep = sh.puts%recordSweepEvery == 0
			sh.mu.Unlock()
			return e, sweep
		}
		sh.mu.Unlock()
		e.mu.Lock()
		if !e.gone {
			return e, false
		}
		e.mu.Unlock()
	}
}

// unlinkRecord removes e from its shard. The caller holds e.mu.
func unlinkRecord(sh *recordShard, k recordKey, e *recordEntry) {
	sh.mu.Lock()
	if sh.m[k] == e {
		delete(sh.m, k)
	}
	sh.mu.Unlock()
	e.gone = true
	e.live = false
	e.value = nil
}

// sweepRecords drops the expired records of a shard from memory. Entries
// that a writer holds are skipped. The journal is not told: an expired
// record reads as absent whether or not a backend still has it.
func (s *Store) sweepRecords(sh *recordShard) {
	now := time.Now()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for k, e := range sh.m {
		if !e.mu.TryLock() {
			continue
		}
		if e.live && expired(e.expiresAt, now) {
			delete(sh.m, k)
			e.gone = true
			e.live = false
			e.value = nil
		}
		e.mu.Unlock()
	}
}

// lookupRecord returns the entry of k locked, or nil.
func (s *Store) lookupRecord(sh *recordShard, k recordKey) *recordEntry {
	sh.mu.Lock()
	e := sh.m[k]
	sh.mu.Unlock()
	if e == nil {
		return nil
	}
	e.mu.Lock()
	return e
}

// liveRecord returns the entry of the record under kind and key, locked,
// when it is live and has not expired, else nil (unlinking an expired
// one); and the record's key and shard.
func (s *Store) liveRecord(kind, key string) (*recordEntry, recordKey, *recordShard) {
	k := recordKey{kind, key}
	sh := s.recordShard(k)
	e := s.lookupRecord(sh, k)
	if e == nil {
		return nil, k, sh
	}
	if !e.live {
		e.mu.Unlock()
		return nil, k, sh
	}
	if expired(e.expiresAt, time.Now()) {
		unlinkRecord(sh, k, e)
		e.mu.Unlock()
		return nil, k, sh
	}
	return e, k, sh
}

// GetRecord returns a copy of the record stored under kind and key; an error
// wrapping ciba.ErrNotFound if there is none or it expired.
func (s *Store) GetRecord(_ context.Context, kind, key string) ([]byte, error) {
	if s.closed.Load() {
		return nil, errClosed
	}
	e, _, _ := s.liveRecord(kind, key)
	if e == nil {
		return nil, errRecordNotFound
	}
	defer e.mu.Unlock()
	return bytes.Clone(e.value), nil
}

// TakeRecord returns and deletes the record stored under kind and key; an
// error wrapping ciba.ErrNotFound if there is none or it expired. Of
// concurrent callers, exactly one gets a record.
func (s *Store) TakeRecord(ctx context.Context, kind, key string) ([]byte, error) {
	if err := s.usable(ctx); err != nil {
		return nil, fmt.Errorf("memory store: take record: %w", err)
	}
	e, k, sh := s.liveRecord(kind, key)
	if e == nil {
		return nil, errRecordNotFound
	}
	defer e.mu.Unlock()
	if s.journal != nil {
		if err := s.journal.DeleteRecord(ctx, kind, key); err != nil {
			return nil, journalError("take record", err)
		}
	}
	v := e.value
	unlinkRecord(sh, k, e)
	return v, nil
}

// SwapRecord replaces the record under kind and key by a copy of new if it
// holds old (nil: absent or expired); a nil new deletes it. What it writes
// has no lifetime (ciba.Store.SwapRecord).
func (s *Store) SwapRecord(ctx context.Context, kind, key string, old, new []byte) (bool, error) {
	if err := s.usable(ctx); err != nil {
		return false, fmt.Errorf("memory store: swap record: %w", err)
	}
	if err := checkRecordKey(kind); err != nil {
		return false, fmt.Errorf("memory store: swap record: %w", err)
	}
	k := recordKey{kind, key}
	sh := s.recordShard(k)
	e, sweep := s.lockRecord(sh, k)
	defer func() {
		if sweep {
			s.sweepRecords(sh)
		}
	}()
	present := e.live && !expired(e.expiresAt, time.Now())
	if present != (old != nil) || present && !bytes.Equal(e.value, old) {
		if !e.live {
			unlinkRecord(sh, k, e)
		}
		e.mu.Unlock()
		return false, nil
	}
	if new == nil {
		if s.journal != nil {
			if err := s.journal.DeleteRecord(ctx, kind, key); err != nil {
				if !e.live {
					unlinkRecord(sh, k, e)
				}
				e.mu.Unlock()
				return false, journalError("swap record", err)
			}
		}
		unlinkRecord(sh, k, e)
		e.mu.Unlock()
		return true, nil
	}
	if s.journal != nil {
		if err := s.journal.PutRecord(ctx, kind, key, new, time.Time{}); err != nil {
			if !e.live {
				unlinkRecord(sh, k, e)
			}
			e.mu.Unlock()
			return false, journalError("swap record", err)
		}
	}
	e.value = bytes.Clone(new)
	e.expiresAt = time.Time{}
	e.live = true
	e.mu.Unlock()
	return true, nil
}

// Close makes every later call fail with an error wrapping
// ciba.ErrUnavailable. It does not close the journal, which belongs to the
// caller. It may be called more than once.
func (s *Store) Close() error {
	s.closed.Store(true)
	return nil
}

// Load adds r to memory without journaling it; an error wrapping
// ciba.ErrExists if its ID or ApprovalID is taken. It is for backends that
// preload their durable state at open, before the Store is shared.
func (s *Store) Load(r *ciba.AuthRequest) error {
	return s.insert(context.Background(), "load request", r, false)
}

// LoadRecord adds a copy of a record to memory without journaling it; a zero
// expiresAt means forever. An error wraps ciba.ErrExists if the key holds an
// unexpired record. It is for backends that preload their durable state at
// open, before the Store is shared.
func (s *Store) LoadRecord(kind, key string, value []byte, expiresAt time.Time) error {
	if err := checkRecordKey(kind); err != nil {
		return fmt.Errorf("memory store: load record: %w", err)
	}
	k := recordKey{kind, key}
	sh := s.recordShard(k)
	e, _ := s.lockRecord(sh, k)
	defer e.mu.Unlock()
	if e.live && !expired(e.expiresAt, time.Now()) {
		return fmt.Errorf("memory store: load record: %w", ciba.ErrExists)
	}
	e.value = bytes.Clone(value)
	e.expiresAt = expiresAt
	e.live = true
	return nil
}

// SubscribeFunc calls f after every successful UpdateRequest or
// DeleteRequest of request id until the returned function stops it
// (wakeup.Hub.SubscribeFunc: f must return at once).
func (s *Store) SubscribeFunc(id string, f func()) func() {
	return s.subs[s.shard(id)].SubscribeFunc(id, f)
}
