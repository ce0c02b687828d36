package embedded

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) ciba.Store {
		return open(t, filepath.Join(t.TempDir(), "store.db"))
	})
}

// open opens the store at path and closes it when the test ends.
func open(t *testing.T, path string, opts ...Option) *Store {
	t.Helper()
	s, err := Open(t.Context(), path, opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestOpenCreatesPrivateFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "cibaproxy")
	path := filepath.Join(dir, "store.db")
	s := open(t, path)
	if s.Path() != path {
		t.Fatalf("Path() = %q, want %q", s.Path(), path)
	}
	for p, want := range map[string]os.FileMode{dir: 0o700, path: 0o600} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s has mode %v, want %v", p, got, want)
		}
	}
}

func TestOpenLockedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.db")
	open(t, path)
	_, err := Open(t.Context(), path, WithLockTimeout(50*time.Millisecond))
	if err == nil || !strings.Contains(err.Error(), path+" is locked by another process (one process per file: stop the other cibaproxy serve, or give this one its own store.path)") {
		t.Fatalf("a second Open: got %v, want an error saying the file is locked", err)
	}
}

func TestReopenKeepsEverything(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "store.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	var kept []*ciba.AuthRequest
	for i := range 6 {
		r := storetest.NewRequest()
		if err := s.CreateRequest(ctx, r); err != nil {
			t.Fatal(err)
		}
		switch i % 3 {
		case 0:
			if err := s.DeleteRequest(ctx, r.ID); err != nil {
				t.Fatal(err)
			}
			continue
		case 1:
			now := time.Now().UTC().Round(0)
			if r, err = s.UpdateRequest(ctx, r.ID, func(cur *ciba.AuthRequest) error {
				return cur.Approve(now, now, []byte("sealed"))
			}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.UpdatePace(ctx, r.ID, func(p *ciba.Pace) error {
			p.Interval = time.Hour
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		kept = append(kept, r)
	}
	records := map[string]time.Duration{"forever": 0, "hour": time.Hour, "taken": time.Hour}
	for key, ttl := range records {
		if err := s.PutRecord(ctx, "key", key, []byte(key), ttl); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.TakeRecord(ctx, "key", "taken"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = open(t, path)
	n := 0
	if err := s.ListRequests(ctx, func(*ciba.AuthRequest) bool { n++; return true }); err != nil {
		t.Fatal(err)
	}
	if n != len(kept) {
		t.Fatalf("after reopening there are %d requests, want %d", n, len(kept))
	}
	for _, r := range kept {
		got, err := s.GetRequest(ctx, r.ID)
		if err != nil || !storetest.SameRequest(got, r) {
			t.Fatalf("GetRequest after reopening = %+v, %v; want %+v", got, err, r)
		}
		got, err = s.GetRequestByApprovalID(ctx, r.ApprovalID)
		if err != nil || got.ID != r.ID {
			t.Fatalf("GetRequestByApprovalID after reopening = %+v, %v", got, err)
		}
		// Pace state is soft: it starts over.
		p, err := s.UpdatePace(ctx, r.ID, func(*ciba.Pace) error { return nil })
		if err != nil || p != (ciba.Pace{}) {
			t.Fatalf("UpdatePace after reopening = %+v, %v; want a zero Pace", p, err)
		}
	}
	dup := storetest.NewRequest()
	dup.ApprovalID = kept[0].ApprovalID
	if err := s.CreateRequest(ctx, dup); !errors.Is(err, ciba.ErrExists) {
		t.Fatalf("CreateRequest with an ApprovalID taken before reopening: %v", err)
	}
	for _, key := range []string{"forever", "hour"} {
		if v, err := s.GetRecord(ctx, "key", key); err != nil || string(v) != key {
			t.Fatalf("GetRecord(%s) after reopening = %q, %v", key, v, err)
		}
	}
	if err := s.PutRecord(ctx, "key", "hour", nil, 0); !errors.Is(err, ciba.ErrExists) {
		t.Fatalf("PutRecord over a record kept across reopening: %v", err)
	}
	if _, err := s.GetRecord(ctx, "key", "taken"); !errors.Is(err, ciba.ErrNotFound) {
		t.Fatalf("GetRecord of a taken record after reopening: %v", err)
	}
}

// diskRecords returns the record keys in the file at path, which must not be
// open.
func diskRecords(t *testing.T, path string) []string {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var keys []string
	if err := db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(recordsBucket).ForEach(func(k, _ []byte) error {
			keys = append(keys, strings.ReplaceAll(string(k), "\x00", "/"))
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	return keys
}

func TestRecordsExpiredAcrossReopenAreGone(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "store.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutRecord(ctx, "jti", "short", []byte("x"), 30*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := s.PutRecord(ctx, "jti", "long", []byte("y"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := diskRecords(t, path); len(got) != 2 {
		t.Fatalf("before reopening the file has records %q, want 2", got)
	}
	time.Sleep(60 * time.Millisecond)

	s, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetRecord(ctx, "jti", "short"); !errors.Is(err, ciba.ErrNotFound) {
		t.Fatalf("GetRecord of a record that expired while closed: %v", err)
	}
	if v, err := s.GetRecord(ctx, "jti", "long"); err != nil || string(v) != "y" {
		t.Fatalf("GetRecord of an unexpired record = %q, %v", v, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := diskRecords(t, path); len(got) != 1 || got[0] != "jti/long" {
		t.Fatalf("after reopening the file has records %q, want only jti/long", got)
	}
}

func TestSweepDeletesExpiredRecordsFromDisk(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "store.db")
	s, err := Open(ctx, path, WithSweepInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutRecord(ctx, "jti", "short", nil, 20*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if err := s.PutRecord(ctx, "jti", "long", nil, time.Hour); err != nil { // starts a sweep
		t.Fatal(err)
	}
	s.journal.wg.Wait() // Close would stop it
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := diskRecords(t, path); len(got) != 1 || got[0] != "jti/long" {
		t.Fatalf("after a sweep the file has records %q, want only jti/long", got)
	}
}

func TestJournalFailureChangesNothing(t *testing.T) {
	ctx := t.Context()
	s := open(t, filepath.Join(t.TempDir(), "store.db"))
	r := storetest.NewRequest()
	if err := s.CreateRequest(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := s.PutRecord(ctx, "refresh", "a", []byte("one"), time.Hour); err != nil {
		t.Fatal(err)
	}
	// Close the file under the memory store: every write now fails in the
	// journal, while reads are still served from memory.
	if err := s.journal.db.Close(); err != nil {
		t.Fatal(err)
	}
	fresh := storetest.NewRequest()
	for name, err := range map[string]error{
		"CreateRequest": s.CreateRequest(ctx, fresh),
		"UpdateRequest": func() error {
			_, err := s.UpdateRequest(ctx, r.ID, func(cur *ciba.AuthRequest) error {
				return cur.Deny(time.Now(), "no")
			})
			return err
		}(),
		"DeleteRequest": s.DeleteRequest(ctx, r.ID),
		"PutRecord":     s.PutRecord(ctx, "refresh", "b", nil, time.Hour),
		"TakeRecord": func() error {
			_, err := s.TakeRecord(ctx, "refresh", "a")
			return err
		}(),
	} {
		if !errors.Is(err, ciba.ErrUnavailable) || !errors.Is(err, berrors.ErrDatabaseNotOpen) {
			t.Errorf("%s with the file closed: got %v, want ErrUnavailable wrapping bbolt's error", name, err)
		}
	}
	if got, err := s.GetRequest(ctx, r.ID); err != nil || !storetest.SameRequest(got, r) {
		t.Fatalf("GetRequest after failed writes = %+v, %v; want the request unchanged", got, err)
	}
	if _, err := s.GetRequest(ctx, fresh.ID); !errors.Is(err, ciba.ErrNotFound) {
		t.Fatalf("GetRequest of the request whose creation failed: %v", err)
	}
	if v, err := s.GetRecord(ctx, "refresh", "a"); err != nil || string(v) != "one" {
		t.Fatalf("GetRecord after a failed take = %q, %v", v, err)
	}
}

// crashEnv names the file the crash helper writes to; set only in the child.
const crashEnv = "CIBAPROXY_EMBEDDED_CRASH_PATH"

// crashRequest is the request the crash helper creates under id; the parent
// rebuilds it to check what it finds.
func crashRequest(id string) *ciba.AuthRequest {
	at := time.Unix(1_700_000_000, 0).UTC()
	return &ciba.AuthRequest{
		ID:         id,
		ApprovalID: "approval-" + id,
		ClientID:   "crash-client",
		Mode:       ciba.ModePing,
		Subject:    "subject-" + id,
		Scopes:     []string{"openid", id},
		CreatedAt:  at,
		ExpiresAt:  at.Add(time.Hour),
		Interval:   5 * time.Second,
		Status:     ciba.StatusPending,
		Result:     []byte("result-" + id),
	}
}

// TestCrashHelper is the child of TestAcknowledgedWritesSurviveKill9: it
// creates requests from 8 goroutines and prints "ack <id>" on stdout after
// each CreateRequest returned nil, until it is killed, 5000 requests were
// created or 20 s passed.
func TestCrashHelper(t *testing.T) {
	path := os.Getenv(crashEnv)
	if path == "" {
		t.Skip("the child of TestAcknowledgedWritesSurviveKill9")
	}
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	deadline := time.Now().Add(20 * time.Second)
	var n atomic.Int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := n.Add(1); i <= 5000 && time.Now().Before(deadline); i = n.Add(1) {
				id := fmt.Sprintf("crash-%d-%d", w, i)
				if err := s.CreateRequest(context.Background(), crashRequest(id)); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				// os.Stdout is unbuffered: the line is in the pipe when
				// Fprintf returns.
				_, err := fmt.Fprintf(os.Stdout, "ack %s\n", id)
				mu.Unlock()
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestAcknowledgedWritesSurviveKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	path := filepath.Join(t.TempDir(), "store.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnv+"="+path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// A child that hangs is killed too, and then fails the count below.
	watchdog := time.AfterFunc(60*time.Second, func() { _ = cmd.Process.Kill() })
	defer watchdog.Stop()

	var acked []string
	killed := false
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		id, ok := strings.CutPrefix(sc.Text(), "ack ")
		if !ok {
			continue
		}
		acked = append(acked, id)
		if len(acked) >= 200 && !killed {
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			killed = true
		}
		// Acks already in the pipe when the kill lands count too.
	}
	_ = cmd.Wait() // "signal: killed"
	if !killed {
		t.Fatalf("the child acknowledged only %d creates before exiting; stderr:\n%s", len(acked), stderr.String())
	}

	s := open(t, path)
	for _, id := range acked {
		got, err := s.GetRequest(t.Context(), id)
		if err != nil {
			t.Fatalf("request %s was acknowledged before kill -9 but is lost: %v", id, err)
		}
		if want := crashRequest(id); !storetest.SameRequest(got, want) {
			t.Fatalf("request %s after kill -9 = %+v, want %+v", id, got, want)
		}
		if _, err := s.GetRequestByApprovalID(t.Context(), "approval-"+id); err != nil {
			t.Fatalf("the ApprovalID of %s after kill -9: %v", id, err)
		}
	}
	t.Logf("%d acknowledged requests survived kill -9", len(acked))
}

func BenchmarkCreateRequest(b *testing.B) {
	for _, bc := range []struct {
		name        string
		parallelism int // goroutines per GOMAXPROCS; 0 for one goroutine
	}{{"serial", 0}, {"parallel", 8}} {
		b.Run(bc.name, func(b *testing.B) {
			s, err := Open(context.Background(), filepath.Join(b.TempDir(), "store.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			b.ReportAllocs()
			if bc.parallelism == 0 {
				for b.Loop() {
					if err := s.CreateRequest(ctx, storetest.NewRequest()); err != nil {
						b.Fatal(err)
					}
				}
				return
			}
			b.SetParallelism(bc.parallelism)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := s.CreateRequest(ctx, storetest.NewRequest()); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

func TestSwappedRecordsSurviveReopen(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "store.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct{ key, old, new string }{{"alice", "", "one"}, {"alice", "one", "two"}, {"bob", "", "gone"}} {
		var old []byte
		if step.old != "" {
			old = []byte(step.old)
		}
		if ok, err := s.SwapRecord(ctx, "passkeys", step.key, old, []byte(step.new)); !ok || err != nil {
			t.Fatalf("SwapRecord(%s → %s) = %v, %v", step.old, step.new, ok, err)
		}
	}
	if ok, err := s.SwapRecord(ctx, "passkeys", "bob", []byte("gone"), nil); !ok || err != nil {
		t.Fatalf("SwapRecord(gone → nil) = %v, %v", ok, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v, err := s.GetRecord(ctx, "passkeys", "alice"); err != nil || string(v) != "two" {
		t.Fatalf("after reopen alice = %q, %v; want two", v, err)
	}
	if _, err := s.GetRecord(ctx, "passkeys", "bob"); !errors.Is(err, ciba.ErrNotFound) {
		t.Fatalf("after reopen bob: %v, want ErrNotFound", err)
	}
}
