package memory

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(*testing.T) ciba.Store { return New() })
}

func TestConformanceWithJournal(t *testing.T) {
	storetest.Run(t, func(*testing.T) ciba.Store { return New(WithJournal(newFakeJournal())) })
}

// fakeJournal keeps what it is told in maps, and fails every call while
// fail is set.
type fakeJournal struct {
	mu       sync.Mutex
	fail     error
	requests map[string]*ciba.AuthRequest
	records  map[recordKey][]byte
	calls    int
}

func newFakeJournal() *fakeJournal {
	return &fakeJournal{requests: map[string]*ciba.AuthRequest{}, records: map[recordKey][]byte{}}
}

func (j *fakeJournal) setFail(err error) {
	j.mu.Lock()
	j.fail = err
	j.mu.Unlock()
}

func (j *fakeJournal) begin(ctx context.Context) error {
	j.calls++
	if err := ctx.Err(); err != nil {
		return err
	}
	return j.fail
}

func (j *fakeJournal) PutRequest(ctx context.Context, r *ciba.AuthRequest) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.begin(ctx); err != nil {
		return err
	}
	j.requests[r.ID] = r.Clone()
	return nil
}

func (j *fakeJournal) DeleteRequest(ctx context.Context, id string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.begin(ctx); err != nil {
		return err
	}
	delete(j.requests, id)
	return nil
}

func (j *fakeJournal) PutRecord(ctx context.Context, kind, key string, value []byte, _ time.Time) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.begin(ctx); err != nil {
		return err
	}
	j.records[recordKey{kind, key}] = append([]byte{}, value...)
	return nil
}

func (j *fakeJournal) DeleteRecord(ctx context.Context, kind, key string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.begin(ctx); err != nil {
		return err
	}
	delete(j.records, recordKey{kind, key})
	return nil
}

func TestJournalFailureChangesNothing(t *testing.T) {
	ctx := t.Context()
	j := newFakeJournal()
	s := New(WithJournal(j))
	r := storetest.NewRequest()
	if err := s.CreateRequest(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := s.PutRecord(ctx, "refresh", "a", []byte("one"), time.Hour); err != nil {
		t.Fatal(err)
	}
	ch, cancel := s.Subscribe(r.ID)
	defer cancel()

	diskFull := fmt.Errorf("fake journal: %w: disk full", ciba.ErrUnavailable)
	j.setFail(diskFull)
	fresh := storetest.NewRequest()
	calls := map[string]error{
		"CreateRequest": s.CreateRequest(ctx, fresh),
		"UpdateRequest": func() error {
			_, err := s.UpdateRequest(ctx, r.ID, func(cur *ciba.AuthRequest) error {
				return cur.Deny(time.Now(), "no")
			})
			return err
		}(),
		"DeleteRequest": s.DeleteRequest(ctx, r.ID),
		"PutRecord":     s.PutRecord(ctx, "refresh", "b", []byte("two"), time.Hour),
		"TakeRecord": func() error {
			_, err := s.TakeRecord(ctx, "refresh", "a")
			return err
		}(),
	}
	for name, err := range calls {
		if !errors.Is(err, diskFull) || !errors.Is(err, ciba.ErrUnavailable) {
			t.Errorf("%s with a failing journal: got %v, want the journal's error", name, err)
		}
	}

	got, err := s.GetRequest(ctx, r.ID)
	if err != nil || !storetest.SameRequest(got, r) {
		t.Fatalf("GetRequest after failed writes = %+v, %v; want the request unchanged", got, err)
	}
	if _, err := s.GetRequest(ctx, fresh.ID); !errors.Is(err, ciba.ErrNotFound) {
		t.Fatalf("GetRequest of the request whose creation failed: %v", err)
	}
	if v, err := s.GetRecord(ctx, "refresh", "a"); err != nil || string(v) != "one" {
		t.Fatalf("GetRecord after a failed take = %q, %v", v, err)
	}
	if _, err := s.GetRecord(ctx, "refresh", "b"); !errors.Is(err, ciba.ErrNotFound) {
		t.Fatalf("GetRecord of the record whose put failed: %v", err)
	}
	select {
	case <-ch:
		t.Fatal("a failed update woke the subscriber")
	default:
	}

	// Once the journal works again, the failed writes left nothing behind:
	// the ID, ApprovalID and record key are free.
	j.setFail(nil)
	if err := s.CreateRequest(ctx, fresh); err != nil {
		t.Fatalf("CreateRequest after the journal recovered: %v", err)
	}
	if err := s.PutRecord(ctx, "refresh", "b", []byte("two"), time.Hour); err != nil {
		t.Fatalf("PutRecord after the journal recovered: %v", err)
	}
}

func TestJournalMirrorsEveryWrite(t *testing.T) {
	ctx := t.Context()
	j := newFakeJournal()
	s := New(WithJournal(j))
	var kept []*ciba.AuthRequest
	for i := range 10 {
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
			var err error
			if r, err = s.UpdateRequest(ctx, r.ID, func(cur *ciba.AuthRequest) error {
				return cur.Deny(time.Now(), "no")
			}); err != nil {
				t.Fatal(err)
			}
		}
		kept = append(kept, r)
	}
	for _, k := range []string{"a", "b", "c"} {
		if err := s.PutRecord(ctx, "jti", k, []byte(k), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.TakeRecord(ctx, "jti", "b"); err != nil {
		t.Fatal(err)
	}
	callsBefore := j.calls
	for _, r := range kept {
		if _, err := s.UpdatePace(ctx, r.ID, func(p *ciba.Pace) error {
			p.Interval = time.Minute
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if j.calls != callsBefore {
		t.Fatalf("UpdatePace called the journal %d times; pace state is never journaled", j.calls-callsBefore)
	}

	if len(j.requests) != len(kept) {
		t.Fatalf("the journal has %d requests, want %d", len(j.requests), len(kept))
	}
	for _, r := range kept {
		if got := j.requests[r.ID]; got == nil || !storetest.SameRequest(got, r) {
			t.Fatalf("the journal has %+v for %s, want %+v", got, r.ID, r)
		}
	}
	want := map[recordKey]string{{"jti", "a"}: "a", {"jti", "c"}: "c"}
	if len(j.records) != len(want) {
		t.Fatalf("the journal has records %q, want %q", j.records, want)
	}
	for k, v := range want {
		if string(j.records[k]) != v {
			t.Fatalf("the journal has %q for %v, want %q", j.records[k], k, v)
		}
	}
}

func TestLoad(t *testing.T) {
	ctx := t.Context()
	j := newFakeJournal()
	s := New(WithJournal(j))
	r := storetest.NewRequest()
	if err := s.Load(r); err != nil {
		t.Fatalf("Load: %v", err)
	}
	if err := s.LoadRecord("key", "a", []byte("one"), time.Time{}); err != nil {
		t.Fatalf("LoadRecord: %v", err)
	}
	if err := s.LoadRecord("jti", "old", []byte("x"), time.Now().Add(-time.Second)); err != nil {
		t.Fatalf("LoadRecord of an expired record: %v", err)
	}
	if j.calls != 0 {
		t.Fatalf("Load and LoadRecord called the journal %d times", j.calls)
	}
	got, err := s.GetRequestByApprovalID(ctx, r.ApprovalID)
	if err != nil || !storetest.SameRequest(got, r) {
		t.Fatalf("GetRequestByApprovalID of a loaded request = %+v, %v", got, err)
	}
	if v, err := s.GetRecord(ctx, "key", "a"); err != nil || string(v) != "one" {
		t.Fatalf("GetRecord of a loaded record = %q, %v", v, err)
	}
	if _, err := s.GetRecord(ctx, "jti", "old"); !errors.Is(err, ciba.ErrNotFound) {
		t.Fatalf("GetRecord of a loaded expired record: %v", err)
	}
	dup := storetest.NewRequest()
	dup.ApprovalID = r.ApprovalID
	if err := s.Load(dup); !errors.Is(err, ciba.ErrExists) {
		t.Fatalf("Load of a duplicate ApprovalID: %v", err)
	}
	if err := s.LoadRecord("key", "a", []byte("two"), time.Time{}); !errors.Is(err, ciba.ErrExists) {
		t.Fatalf("LoadRecord of a present key: %v", err)
	}
}

func TestInvalidArguments(t *testing.T) {
	ctx := t.Context()
	s := New()
	for name, err := range map[string]error{
		"CreateRequest(nil)":               s.CreateRequest(ctx, nil),
		"CreateRequest without ID":         s.CreateRequest(ctx, &ciba.AuthRequest{ApprovalID: "x"}),
		"PutRecord with no kind":           s.PutRecord(ctx, "", "a", nil, 0),
		"PutRecord with NUL kind":          s.PutRecord(ctx, "a\x00b", "c", nil, 0),
		"PutRecord with negative lifetime": s.PutRecord(ctx, "jti", "a", nil, -time.Second),
		"LoadRecord with no kind":          s.LoadRecord("", "a", nil, time.Time{}),
	} {
		if err == nil {
			t.Errorf("%s succeeded", name)
		}
	}
	if _, err := s.GetRecord(ctx, "jti", "a"); !errors.Is(err, ciba.ErrNotFound) {
		t.Fatalf("a refused PutRecord stored something: %v", err)
	}
}

func TestExpiredRecordsAreSwept(t *testing.T) {
	ctx := t.Context()
	s := New()
	// Enough short-lived records that every shard sweeps at least once
	// after they expired.
	const n = shardCount * recordSweepEvery
	for i := range n {
		if err := s.PutRecord(ctx, "jti", fmt.Sprint("old", i), nil, 20*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(50 * time.Millisecond)
	for i := range 2 * n {
		if err := s.PutRecord(ctx, "jti", fmt.Sprint("new", i), nil, 0); err != nil {
			t.Fatal(err)
		}
	}
	old := 0
	for i := range s.records {
		sh := &s.records[i]
		sh.mu.Lock()
		for k := range sh.m {
			if k.key[:3] == "old" {
				old++
			}
		}
		sh.mu.Unlock()
	}
	if old != 0 {
		t.Fatalf("%d of %d expired records are still in memory", old, n)
	}
}

// TestSubscribeCancelReleases checks that cancelled subscriptions leave no
// state behind.
func TestSubscribeCancelReleases(t *testing.T) {
	s := New()
	var cancels []func()
	for i := range 100 {
		_, cancel := s.Subscribe(fmt.Sprint(i % 10))
		cancels = append(cancels, cancel)
	}
	for _, cancel := range cancels {
		cancel()
		cancel()
	}
	for i := range s.subs {
		if n := s.subs[i].Len(); n != 0 {
			t.Fatalf("shard %d keeps %d subscription lists after every cancel", i, n)
		}
	}
}

// TestUpdatePaceRaceWithDelete checks that an UpdatePace racing a
// DeleteRequest never leaves pace state behind: a request created again
// with the deleted one's id starts with no pace.
func TestUpdatePaceRaceWithDelete(t *testing.T) {
	ctx := t.Context()
	s := New()
	for range 200 {
		r := storetest.NewRequest()
		if err := s.CreateRequest(ctx, r); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Go(func() {
			_, err := s.UpdatePace(ctx, r.ID, func(p *ciba.Pace) error {
				p.Interval = time.Minute
				return nil
			})
			if err != nil && !errors.Is(err, ciba.ErrNotFound) {
				t.Errorf("UpdatePace: %v", err)
			}
		})
		wg.Go(func() {
			if err := s.DeleteRequest(ctx, r.ID); err != nil {
				t.Errorf("DeleteRequest: %v", err)
			}
		})
		wg.Wait()
		if err := s.CreateRequest(ctx, r); err != nil {
			t.Fatal(err)
		}
		p, err := s.UpdatePace(ctx, r.ID, func(*ciba.Pace) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		if p != (ciba.Pace{}) {
			t.Fatalf("pace state outlived its deleted request: %+v", p)
		}
	}
}

// preload returns a store with n requests and their IDs.
func preload(b *testing.B, n int) (*Store, []string) {
	s := New()
	ids := make([]string, n)
	for i := range ids {
		r := storetest.NewRequest()
		if err := s.CreateRequest(context.Background(), r); err != nil {
			b.Fatal(err)
		}
		ids[i] = r.ID
	}
	return s, ids
}

func BenchmarkGetRequest(b *testing.B) {
	s, ids := preload(b, 10000)
	ctx := context.Background()
	var next atomic.Uint32
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(7919))
		for pb.Next() {
			i++
			if _, err := s.GetRequest(ctx, ids[i%len(ids)]); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkUpdatePace(b *testing.B) {
	s, ids := preload(b, 10000)
	ctx := context.Background()
	var next atomic.Uint32
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(7919))
		for pb.Next() {
			i++
			if _, err := s.UpdatePace(ctx, ids[i%len(ids)], bumpPace); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// bumpPace is the updater of a poll that was on time.
func bumpPace(p *ciba.Pace) error {
	p.Interval = 5 * time.Second
	p.NotBefore = p.NotBefore.Add(p.Interval)
	return nil
}

// BenchmarkSweep100k compares what the dispatcher's minute sweep costs over
// 100 000 requests: building each request (ListRequests) or reading its
// sweep view (ListSweep).
func BenchmarkSweep100k(b *testing.B) {
	s, _ := preload(b, 100_000)
	ctx := context.Background()
	b.Run("ListRequests", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var v ciba.SweepView
			_ = s.ListRequests(ctx, func(r *ciba.AuthRequest) bool { ciba.SweepViewOf(r, &v); return true })
		}
	})
	b.Run("ListSweep", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = s.ListSweep(ctx, func(*ciba.SweepView) bool { return true })
		}
	})
}

// TestReusedEntryIsNotTheOldRequest: an entry freed by a deletion is
// reused for the next request of its shard, and whoever still holds it for
// the deleted request finds nothing: not the new request, not its pace.
func TestReusedEntryIsNotTheOldRequest(t *testing.T) {
	ctx := context.Background()
	s := New()
	old := storetest.NewRequest()
	if err := s.CreateRequest(ctx, old); err != nil {
		t.Fatal(err)
	}
	q := ciba.PollQuery{ClientID: old.ClientID, Kind: old.Kind, Cert: old.CertThumbprint, Rule: ciba.PaceRule{Now: time.Now(), Step: 5 * time.Second}}
	if res, err := s.Poll(ctx, old.ID, q); err != nil || res.Outcome != ciba.PollPending {
		t.Fatal(res, err)
	}
	stale := s.entry(old.ID)
	if err := s.DeleteRequest(ctx, old.ID); err != nil {
		t.Fatal(err)
	}
	// A new request whose id falls in the same shard takes the entry.
	var next *ciba.AuthRequest
	for range 10_000 {
		r := storetest.NewRequest()
		if s.key(r.ID).shard() == s.key(old.ID).shard() {
			next = r
			break
		}
	}
	if next == nil {
		t.Fatal("no id in the same shard")
	}
	if err := s.CreateRequest(ctx, next); err != nil {
		t.Fatal(err)
	}
	if s.entry(next.ID) != stale {
		t.Fatal("the freed entry was not reused")
	}
	if p := stale.pace.get(); p != (ciba.Pace{}) {
		t.Fatalf("the reused entry kept the deleted request's pace: %+v", p)
	}
	// Every use of the old id, as a holder of the stale entry would make
	// it, finds nothing, and changes nothing of the new request.
	if enc := stale.cur.Load(); enc == nil || is(enc, old.ID) || !is(enc, next.ID) {
		t.Fatal("the reused entry does not hold the new request alone")
	}
	if _, err := s.GetRequest(ctx, old.ID); !errors.Is(err, ciba.ErrNotFound) {
		t.Errorf("GetRequest of the deleted id: %v", err)
	}
	if _, err := s.UpdateRequest(ctx, old.ID, func(*ciba.AuthRequest) error { return nil }); !errors.Is(err, ciba.ErrNotFound) {
		t.Errorf("UpdateRequest of the deleted id: %v", err)
	}
	if res, err := s.Poll(ctx, old.ID, q); err != nil || res.Outcome != ciba.PollUnknown {
		t.Errorf("Poll of the deleted id: %+v, %v", res, err)
	}
	got, err := s.GetRequest(ctx, next.ID)
	if err != nil || !storetest.SameRequest(got, next) {
		t.Fatalf("the new request is %+v, %v; want %+v", got, err, next)
	}
}

// TestEntriesAreReusedUnderConcurrency creates, polls and deletes requests
// from several goroutines (run with -race): reuse of freed entries must
// never hand one request's state to another.
func TestEntriesAreReusedUnderConcurrency(t *testing.T) {
	ctx := context.Background()
	s := New()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 300 {
				r := storetest.NewRequest()
				if err := s.CreateRequest(ctx, r); err != nil {
					t.Error(err)
					return
				}
				q := ciba.PollQuery{ClientID: r.ClientID, Kind: r.Kind, Cert: r.CertThumbprint, Rule: ciba.PaceRule{Now: time.Now()}}
				if res, err := s.Poll(ctx, r.ID, q); err != nil || res.Outcome != ciba.PollPending {
					t.Errorf("Poll of a live request: %+v, %v", res, err)
				}
				if got, err := s.GetRequest(ctx, r.ID); err != nil || got.ID != r.ID {
					t.Errorf("GetRequest of a live request: %v, %v", got, err)
				}
				if err := s.DeleteRequest(ctx, r.ID); err != nil {
					t.Error(err)
				}
				if _, err := s.GetRequest(ctx, r.ID); !errors.Is(err, ciba.ErrNotFound) {
					t.Errorf("GetRequest after delete: %v", err)
				}
			}
		})
	}
	wg.Wait()
}

// BenchmarkPoll measures the poll of a pending request (Store.Poll), on
// time and early: the hot path of every client's polls.
func BenchmarkPoll(b *testing.B) {
	ctx := context.Background()
	s := New()
	r := storetest.NewRequest()
	if err := s.CreateRequest(ctx, r); err != nil {
		b.Fatal(err)
	}
	q := ciba.PollQuery{ClientID: r.ClientID, Kind: r.Kind, Cert: r.CertThumbprint, Rule: ciba.PaceRule{Now: time.Now(), Step: 5 * time.Second}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Poll(ctx, r.ID, q); err != nil {
			b.Fatal(err)
		}
	}
}
