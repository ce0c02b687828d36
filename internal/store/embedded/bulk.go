package embedded

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// bulkChunk is how many keys one transaction of Bulk.WriteFile puts (a
// variable for the tests).
var bulkChunk = 50_000

// Bulk is a memory.Journal that keeps every write in memory, for WriteFile
// to put into a store file afterwards in a few large transactions with the
// keys in order. It is for the benchmark, which seeds a million pending
// requests before a server starts (bench/seed -config): the server's own
// journal commits each batch of concurrent writes with an fsync and takes
// minutes for that. No server uses it: nothing written to it is durable
// before WriteFile returns. It is safe for concurrent use.
type Bulk struct {
	mu       sync.Mutex
	requests map[string][]byte // auth_req_id -> JSON; nil value: deleted
	records  map[string][]byte // recordKey -> encodeRecord; nil value: deleted
}

// NewBulk returns an empty Bulk.
func NewBulk() *Bulk {
	return &Bulk{requests: map[string][]byte{}, records: map[string][]byte{}}
}

// PutRequest keeps r's JSON, as the store file holds it.
func (b *Bulk) PutRequest(_ context.Context, r *ciba.AuthRequest) error {
	v, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("embedded bulk: encode request: %w", err)
	}
	b.mu.Lock()
	b.requests[r.ID] = v
	b.mu.Unlock()
	return nil
}

// DeleteRequest forgets the request with the given ID, and deletes it from
// the file in WriteFile.
func (b *Bulk) DeleteRequest(_ context.Context, id string) error {
	b.mu.Lock()
	b.requests[id] = nil
	b.mu.Unlock()
	return nil
}

// PutRecord keeps a record.
func (b *Bulk) PutRecord(_ context.Context, kind, key string, value []byte, expiresAt time.Time) error {
	b.mu.Lock()
	b.records[string(recordKey(kind, key))] = encodeRecord(value, expiresAt)
	b.mu.Unlock()
	return nil
}

// DeleteRecord forgets a record, and deletes it from the file in WriteFile.
func (b *Bulk) DeleteRecord(_ context.Context, kind, key string) error {
	b.mu.Lock()
	b.records[string(recordKey(kind, key))] = nil
	b.mu.Unlock()
	return nil
}

// Requests returns how many requests b holds (deletions not counted).
func (b *Bulk) Requests() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, v := range b.requests {
		if v != nil {
			n++
		}
	}
	return n
}

// WriteFile puts what b holds into the store file at path, creating it as
// Open would: the requests, replacing any with the same ID, and the records
// the file does not hold already (a record the file has, such as the
// signing key a server generated there, is kept). Deletions are applied. No
// process may have the file open; WriteFile fails after a second if one
// does. Each transaction commits with bbolt's fsync, so what it wrote is
// durable when it returns.
func (b *Bulk) WriteFile(ctx context.Context, path string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("embedded bulk: create the directory of %s: %w", path, err)
	}
	// The map is sized for what is written at once (about 1 KiB per key
	// on disk), so that bbolt does not remap the growing file between
	// transactions.
	size := 1 << 20
	for _, m := range []map[string][]byte{b.requests, b.records} {
		size += 1024 * len(m)
	}
	if fi, err := os.Stat(path); err == nil {
		size += int(fi.Size())
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: defaultLockTimeout, InitialMmapSize: size})
	if err != nil {
		return fmt.Errorf("embedded bulk: open %s: %w", path, err)
	}
	err = errors.Join(
		putSorted(ctx, db, requestsBucket, b.requests, true),
		putSorted(ctx, db, recordsBucket, b.records, false),
	)
	if cerr := db.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("close: %w", cerr))
	}
	if err != nil {
		return fmt.Errorf("embedded bulk: write %s: %w", path, err)
	}
	return nil
}

// putSorted writes m into bucket name in key order, bulkChunk keys per
// transaction; a nil value deletes its key. Unless replace, a key the
// bucket holds is left as it is.
func putSorted(ctx context.Context, db *bolt.DB, name []byte, m map[string][]byte, replace bool) error {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	// One transaction at least, which creates the bucket.
	for first := true; first || len(keys) > 0; first = false {
		chunk := keys[:min(len(keys), bulkChunk)]
		keys = keys[len(chunk):]
		if err := ctx.Err(); err != nil {
			return err
		}
		err := db.Update(func(tx *bolt.Tx) error {
			bk, err := tx.CreateBucketIfNotExists(name)
			if err != nil {
				return fmt.Errorf("create bucket %s: %w", name, err)
			}
			// Keys come in order: full pages, as an append-only load.
			bk.FillPercent = 0.9
			for _, k := range chunk {
				v := m[k]
				switch {
				case v == nil:
					err = bk.Delete([]byte(k))
				case !replace && bk.Get([]byte(k)) != nil:
					continue
				default:
					err = bk.Put([]byte(k), v)
				}
				if err != nil {
					return fmt.Errorf("%s %q: %w", name, k, err)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}
