package metrics

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// Store returns st with every operation timed in
// cibaproxy_store_operation_duration_seconds and failures counted in
// cibaproxy_store_errors_total. Not-found, exists and errors returned by an
// updater are answers, not failures.
func (m *Metrics) Store(st ciba.Store) ciba.Store {
	s := &store{Store: st, m: m, ops: make(map[string]storeOp)}
	for _, op := range []string{"create", "get", "get_by_approval_id", "update", "delete", "list", "update_pace", "poll", "list_sweep", "list_due", "put_record", "get_record", "take_record", "swap_record"} {
		s.ops[op] = storeOp{dur: m.storeDur.WithLabelValues(op), errs: m.storeErrors.WithLabelValues(op)}
	}
	return s
}

type storeOp struct {
	dur  prometheus.Observer
	errs prometheus.Counter
}

type store struct {
	ciba.Store
	m   *Metrics
	ops map[string]storeOp
}

// done records one operation that started at start.
func (s *store) done(op string, start time.Time, err error) {
	o := s.ops[op]
	o.dur.Observe(time.Since(start).Seconds())
	if err != nil && errors.Is(err, ciba.ErrUnavailable) {
		o.errs.Inc()
	}
}

func (s *store) CreateRequest(ctx context.Context, r *ciba.AuthRequest) error {
	start := time.Now()
	err := s.Store.CreateRequest(ctx, r)
	s.done("create", start, err)
	return err
}

func (s *store) GetRequest(ctx context.Context, id string) (*ciba.AuthRequest, error) {
	start := time.Now()
	r, err := s.Store.GetRequest(ctx, id)
	s.done("get", start, err)
	return r, err
}

func (s *store) GetRequestByApprovalID(ctx context.Context, id string) (*ciba.AuthRequest, error) {
	start := time.Now()
	r, err := s.Store.GetRequestByApprovalID(ctx, id)
	s.done("get_by_approval_id", start, err)
	return r, err
}

func (s *store) UpdateRequest(ctx context.Context, id string, fn func(*ciba.AuthRequest) error) (*ciba.AuthRequest, error) {
	start := time.Now()
	r, err := s.Store.UpdateRequest(ctx, id, fn)
	s.done("update", start, err)
	return r, err
}

func (s *store) DeleteRequest(ctx context.Context, id string) error {
	start := time.Now()
	err := s.Store.DeleteRequest(ctx, id)
	s.done("delete", start, err)
	return err
}

func (s *store) ListRequests(ctx context.Context, fn func(*ciba.AuthRequest) bool) error {
	start := time.Now()
	err := s.Store.ListRequests(ctx, fn)
	s.done("list", start, err)
	return err
}

func (s *store) UpdatePace(ctx context.Context, id string, fn func(*ciba.Pace) error) (ciba.Pace, error) {
	start := time.Now()
	p, err := s.Store.UpdatePace(ctx, id, fn)
	s.done("update_pace", start, err)
	return p, err
}

func (s *store) PutRecord(ctx context.Context, kind, key string, value []byte, ttl time.Duration) error {
	start := time.Now()
	err := s.Store.PutRecord(ctx, kind, key, value, ttl)
	s.done("put_record", start, err)
	return err
}

func (s *store) GetRecord(ctx context.Context, kind, key string) ([]byte, error) {
	start := time.Now()
	v, err := s.Store.GetRecord(ctx, kind, key)
	s.done("get_record", start, err)
	return v, err
}

func (s *store) TakeRecord(ctx context.Context, kind, key string) ([]byte, error) {
	start := time.Now()
	v, err := s.Store.TakeRecord(ctx, kind, key)
	s.done("take_record", start, err)
	return v, err
}

func (s *store) SwapRecord(ctx context.Context, kind, key string, old, new []byte) (bool, error) {
	start := time.Now()
	ok, err := s.Store.SwapRecord(ctx, kind, key, old, new)
	s.done("swap_record", start, err)
	return ok, err
}

// Poll times the poll (the path clients load most): two clock reads and
// one observation, no allocation.
func (s *store) Poll(ctx context.Context, id string, q ciba.PollQuery) (ciba.PollResult, error) {
	start := time.Now()
	res, err := s.Store.Poll(ctx, id, q)
	s.done("poll", start, err)
	return res, err
}

func (s *store) ListSweep(ctx context.Context, fn func(*ciba.SweepView) bool) error {
	start := time.Now()
	err := s.Store.ListSweep(ctx, fn)
	s.done("list_sweep", start, err)
	return err
}

func (s *store) ListDue(ctx context.Context, t time.Time, fn func(string) bool) error {
	start := time.Now()
	err := s.Store.ListDue(ctx, t, fn)
	s.done("list_due", start, err)
	return err
}

// SubscribeFunc passes a function subscription through
// (ciba.FuncSubscriber); for a store without one, a goroutine forwards the
// channel's wake-ups to f.
func (s *store) SubscribeFunc(id string, f func()) func() {
	if fs, ok := s.Store.(ciba.FuncSubscriber); ok {
		return fs.SubscribeFunc(id, f)
	}
	ch, stop := s.Store.Subscribe(id)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-ch:
				f()
			case <-done:
				return
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { stop(); close(done) }) }
}
