// Package embedded is the default ciba.Store: durable on local disk in one
// bbolt file (pure Go, no cgo), for a single cibaproxy process.
//
// Every request and record lives in memory too (package memory): the poll
// hot path is served from memory and never waits for the disk. Every write
// goes to bbolt first, with bbolt's fsync on commit left on, and is applied in
// memory and acknowledged only once committed, so an acknowledged write
// survives kill -9 and power loss. Concurrent writers share one commit
// (bbolt's DB.Batch), so they share one fsync. Poll pacing is soft state and
// is kept in memory only.
//
// On disk there are two buckets: "requests" maps an auth_req_id to the JSON
// of its ciba.AuthRequest; "records" maps kind + "\x00" + key to an 8-byte
// big-endian expiry (Unix nanoseconds, 0 for never) followed by the value.
package embedded

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/store/memory"
)

// Bucket names.
var (
	requestsBucket = []byte("requests")
	recordsBucket  = []byte("records")
)

// Defaults of the options.
const (
	defaultLockTimeout   = time.Second
	defaultBatchDelay    = time.Millisecond
	defaultSweepInterval = time.Minute
	// sweepChunk is how many expired records one sweep transaction deletes,
	// so that a sweep never holds the writer lock for long.
	sweepChunk = 1000
)

// Option configures Open.
type Option func(*options)

type options struct {
	lockTimeout   time.Duration
	batchDelay    time.Duration
	sweepInterval time.Duration
}

// WithLockTimeout sets how long Open waits for another process to release
// the file (default 1 s). Zero waits forever.
func WithLockTimeout(d time.Duration) Option {
	return func(o *options) { o.lockTimeout = d }
}

// WithMaxBatchDelay sets how long a write waits for concurrent writes to
// share its commit (bbolt's DB.MaxBatchDelay; default 1 ms). Longer delays
// save fsyncs under load and add latency to a lone write.
func WithMaxBatchDelay(d time.Duration) Option {
	return func(o *options) { o.batchDelay = d }
}

// WithSweepInterval sets how often expired records are deleted from disk
// (default 1 min). A sweep runs in the background, started by a PutRecord
// when the interval has passed; Close stops it and waits for it to return.
// Expired records read as absent whether or not they were swept.
func WithSweepInterval(d time.Duration) Option {
	return func(o *options) { o.sweepInterval = d }
}

// Store is the embedded ciba.Store. Open it with Open; Close it when done.
type Store struct {
	mem     *memory.Store
	journal *journal
	path    string

	closeOnce sync.Once
	closeErr  error
}

// Compile-time check that Store implements the contract.
var _ ciba.Store = (*Store)(nil)

// Open opens the store in the file at path, creating the file (mode 0600) and
// its directory (mode 0700) if needed, and loads every request and unexpired
// record into memory. Expired records are deleted. It fails after the lock
// timeout if another process has the file open.
func Open(ctx context.Context, path string, opts ...Option) (*Store, error) {
	o := options{
		lockTimeout:   defaultLockTimeout,
		batchDelay:    defaultBatchDelay,
		sweepInterval: defaultSweepInterval,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("embedded store: create the directory of %s: %w", path, err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: o.lockTimeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("embedded store: %s is locked by another process (one process per file: stop the other cibaproxy serve, or give this one its own store.path)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("embedded store: open %s: %w", path, err)
	}
	db.MaxBatchDelay = o.batchDelay
	j := &journal{db: db, sweepInterval: o.sweepInterval, stop: make(chan struct{})}
	j.lastSweep = time.Now()
	mem := memory.New(memory.WithJournal(j))
	if err := load(ctx, db, mem); err != nil {
		_ = db.Close() // the load error is the one to report
		return nil, fmt.Errorf("embedded store: open %s: %w", path, err)
	}
	return &Store{mem: mem, journal: j, path: path}, nil
}

// load creates the buckets, loads the requests and unexpired records into
// mem, and deletes expired records.
func load(ctx context.Context, db *bolt.DB, mem *memory.Store) error {
	if err := db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{requestsBucket, recordsBucket} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("create bucket %s: %w", name, err)
			}
		}
		return nil
	}); err != nil {
		return err
	}
	now := time.Now()
	var expiredKeys [][]byte
	if err := db.View(func(tx *bolt.Tx) error {
		if err := tx.Bucket(requestsBucket).ForEach(func(k, v []byte) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			var r ciba.AuthRequest
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("decode a stored request: %w", err)
			}
			if r.ID != string(k) {
				return errors.New("a stored request is filed under another ID")
			}
			return mem.Load(&r)
		}); err != nil {
			return err
		}
		return tx.Bucket(recordsBucket).ForEach(func(k, v []byte) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			kind, key, ok := splitRecordKey(k)
			exp, value, ok2 := decodeRecord(v)
			if !ok || !ok2 {
				return errors.New("a stored record is malformed")
			}
			if !exp.IsZero() && !now.Before(exp) {
				expiredKeys = append(expiredKeys, bytes.Clone(k))
				return nil
			}
			return mem.LoadRecord(kind, key, value, exp)
		})
	}); err != nil {
		return err
	}
	if len(expiredKeys) == 0 {
		return nil
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(recordsBucket)
		for _, k := range expiredKeys {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("delete expired records: %w", err)
	}
	return nil
}

// recordKey is the bbolt key of a record. The memory store rejects kinds
// containing NUL, so the first NUL separates kind from key.
func recordKey(kind, key string) []byte {
	b := make([]byte, 0, len(kind)+1+len(key))
	b = append(b, kind...)
	b = append(b, 0)
	return append(b, key...)
}

// splitRecordKey reverses recordKey.
func splitRecordKey(k []byte) (kind, key string, ok bool) {
	i := bytes.IndexByte(k, 0)
	if i <= 0 {
		return "", "", false
	}
	return string(k[:i]), string(k[i+1:]), true
}

// encodeRecord returns the bbolt value of a record.
func encodeRecord(value []byte, expiresAt time.Time) []byte {
	b := make([]byte, 8, 8+len(value))
	if !expiresAt.IsZero() {
		binary.BigEndian.PutUint64(b, uint64(expiresAt.UnixNano()))
	}
	return append(b, value...)
}

// decodeRecord reverses encodeRecord. The value aliases v.
func decodeRecord(v []byte) (expiresAt time.Time, value []byte, ok bool) {
	if len(v) < 8 {
		return time.Time{}, nil, false
	}
	if n := binary.BigEndian.Uint64(v); n != 0 {
		expiresAt = time.Unix(0, int64(n))
	}
	return expiresAt, v[8:], true
}

// journal is the memory.Journal that writes to bbolt. It also sweeps expired
// records from disk now and then.
type journal struct {
	db            *bolt.DB
	sweepInterval time.Duration

	mu        sync.Mutex
	lastSweep time.Time
	sweeping  bool
	closed    bool
	stop      chan struct{} // closed by close
	wg        sync.WaitGroup
}

// write commits fn in a shared batch. fn may run more than once.
func (j *journal) write(ctx context.Context, op string, fn func(*bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("embedded store: %s: %w", op, err)
	}
	if err := j.db.Batch(fn); err != nil {
		return fmt.Errorf("embedded store: %s: %w: %w", op, ciba.ErrUnavailable, err)
	}
	return nil
}

// PutRequest writes r as JSON under its ID.
func (j *journal) PutRequest(ctx context.Context, r *ciba.AuthRequest) error {
	v, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("embedded store: encode request: %w", err)
	}
	k := []byte(r.ID)
	return j.write(ctx, "put request", func(tx *bolt.Tx) error {
		return tx.Bucket(requestsBucket).Put(k, v)
	})
}

// DeleteRequest deletes the request with the given ID.
func (j *journal) DeleteRequest(ctx context.Context, id string) error {
	k := []byte(id)
	return j.write(ctx, "delete request", func(tx *bolt.Tx) error {
		return tx.Bucket(requestsBucket).Delete(k)
	})
}

// PutRecord writes a record, and starts a sweep when one is due.
func (j *journal) PutRecord(ctx context.Context, kind, key string, value []byte, expiresAt time.Time) error {
	k, v := recordKey(kind, key), encodeRecord(value, expiresAt)
	if err := j.write(ctx, "put record", func(tx *bolt.Tx) error {
		return tx.Bucket(recordsBucket).Put(k, v)
	}); err != nil {
		return err
	}
	j.maybeSweep()
	return nil
}

// DeleteRecord deletes a record.
func (j *journal) DeleteRecord(ctx context.Context, kind, key string) error {
	k := recordKey(kind, key)
	return j.write(ctx, "delete record", func(tx *bolt.Tx) error {
		return tx.Bucket(recordsBucket).Delete(k)
	})
}

// maybeSweep starts a background sweep if the interval has passed and none
// is running.
func (j *journal) maybeSweep() {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed || j.sweeping || time.Since(j.lastSweep) < j.sweepInterval {
		return
	}
	j.sweeping = true
	j.wg.Add(1)
	go j.sweep()
}

// sweep deletes expired records from disk. Each deletion re-checks the expiry
// inside its transaction, so a record put again meanwhile is kept. Errors are
// dropped: expired records read as absent anyway, and the next sweep retries.
func (j *journal) sweep() {
	defer j.wg.Done()
	defer func() {
		j.mu.Lock()
		j.sweeping = false
		j.lastSweep = time.Now()
		j.mu.Unlock()
	}()
	now := time.Now()
	isExpired := func(v []byte) bool {
		exp, _, ok := decodeRecord(v)
		return ok && !exp.IsZero() && !now.Before(exp)
	}
	var keys [][]byte
	if err := j.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(recordsBucket).ForEach(func(k, v []byte) error {
			if isExpired(v) {
				keys = append(keys, bytes.Clone(k))
			}
			return nil
		})
	}); err != nil {
		return
	}
	for len(keys) > 0 {
		select {
		case <-j.stop:
			return
		default:
		}
		chunk := keys[:min(len(keys), sweepChunk)]
		keys = keys[len(chunk):]
		if err := j.db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(recordsBucket)
			for _, k := range chunk {
				if v := b.Get(k); v != nil && isExpired(v) {
					if err := b.Delete(k); err != nil {
						return err
					}
				}
			}
			return nil
		}); err != nil {
			return
		}
	}
}

// close stops sweeping and waits for a running sweep.
func (j *journal) close() {
	j.mu.Lock()
	if !j.closed {
		j.closed = true
		close(j.stop)
	}
	j.mu.Unlock()
	j.wg.Wait()
}

// Path returns the path of the store's file.
func (s *Store) Path() string { return s.path }

// CreateRequest stores a new request durably; an error wrapping
// ciba.ErrExists if its ID or ApprovalID is taken.
func (s *Store) CreateRequest(ctx context.Context, r *ciba.AuthRequest) error {
	return s.mem.CreateRequest(ctx, r)
}

// GetRequest returns a copy of the request with the given auth_req_id, from
// memory.
func (s *Store) GetRequest(ctx context.Context, id string) (*ciba.AuthRequest, error) {
	return s.mem.GetRequest(ctx, id)
}

// ListSweep lists the sweep's view of every request, from memory
// (ciba.Store.ListSweep).
func (s *Store) ListSweep(ctx context.Context, fn func(v *ciba.SweepView) bool) error {
	return s.mem.ListSweep(ctx, fn)
}

// Poll answers a poll in memory (ciba.Store.Poll); pace state is never
// written to disk.
func (s *Store) Poll(ctx context.Context, id string, q ciba.PollQuery) (ciba.PollResult, error) {
	return s.mem.Poll(ctx, id, q)
}

// ListDue lists nothing: one process opens the store at a time
// (ciba.Store.ListDue).
func (s *Store) ListDue(ctx context.Context, t time.Time, fn func(id string) bool) error {
	return s.mem.ListDue(ctx, t, fn)
}

// GetRequestByApprovalID returns a copy of the request whose ApprovalID is
// id, from memory.
func (s *Store) GetRequestByApprovalID(ctx context.Context, id string) (*ciba.AuthRequest, error) {
	return s.mem.GetRequestByApprovalID(ctx, id)
}

// UpdateRequest applies fn to a copy of the request and stores the result
// durably and atomically; see memory.Store.UpdateRequest for what fn may do.
func (s *Store) UpdateRequest(ctx context.Context, id string, fn func(*ciba.AuthRequest) error) (*ciba.AuthRequest, error) {
	return s.mem.UpdateRequest(ctx, id, fn)
}

// DeleteRequest removes the request durably, with its pace state.
func (s *Store) DeleteRequest(ctx context.Context, id string) error {
	return s.mem.DeleteRequest(ctx, id)
}

// ListRequests calls fn with a copy of every stored request until fn returns
// false.
func (s *Store) ListRequests(ctx context.Context, fn func(*ciba.AuthRequest) bool) error {
	return s.mem.ListRequests(ctx, fn)
}

// UpdatePace applies fn to the pace state of request id atomically, in
// memory only: pace state does not survive a restart.
func (s *Store) UpdatePace(ctx context.Context, id string, fn func(*ciba.Pace) error) (ciba.Pace, error) {
	return s.mem.UpdatePace(ctx, id, fn)
}

// Subscribe returns a channel that receives a value after the request is
// changed or deleted, and a function to stop listening.
func (s *Store) Subscribe(id string) (<-chan struct{}, func()) {
	return s.mem.Subscribe(id)
}

// PutRecord stores a record durably for ttl (0: forever); an error wrapping
// ciba.ErrExists if the key holds an unexpired record.
func (s *Store) PutRecord(ctx context.Context, kind, key string, value []byte, ttl time.Duration) error {
	return s.mem.PutRecord(ctx, kind, key, value, ttl)
}

// GetRecord returns a copy of a record, from memory.
func (s *Store) GetRecord(ctx context.Context, kind, key string) ([]byte, error) {
	return s.mem.GetRecord(ctx, kind, key)
}

// TakeRecord returns and durably deletes a record; of concurrent callers,
// exactly one gets it.
func (s *Store) TakeRecord(ctx context.Context, kind, key string) ([]byte, error) {
	return s.mem.TakeRecord(ctx, kind, key)
}

// SwapRecord replaces a record durably if it holds old (ciba.Store.SwapRecord).
func (s *Store) SwapRecord(ctx context.Context, kind, key string, old, new []byte) (bool, error) {
	return s.mem.SwapRecord(ctx, kind, key, old, new)
}

// Close makes later calls fail with an error wrapping ciba.ErrUnavailable,
// waits for a running sweep and closes the file. It may be called more than
// once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		_ = s.mem.Close() // never fails
		s.journal.close()
		if err := s.journal.db.Close(); err != nil {
			s.closeErr = fmt.Errorf("embedded store: close %s: %w", s.path, err)
		}
	})
	return s.closeErr
}

// SubscribeFunc calls f after the request is changed or deleted until the
// returned function stops it (memory.Store.SubscribeFunc).
func (s *Store) SubscribeFunc(id string, f func()) func() {
	return s.mem.SubscribeFunc(id, f)
}
