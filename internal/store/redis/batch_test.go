package redisstore

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/store/redis/redistest"
	"github.com/cibaproxy/cibaproxy/internal/store/storetest"
)

// TestConcurrentPollsShareRoundTrips: many polls at once, sent in shared
// pipelines, each get their own request's answer and pace: the first
// poll of each request is on time, every later one in the same instant is
// early, however the polls were batched.
func TestConcurrentPollsShareRoundTrips(t *testing.T) {
	srv := redistest.Start(t)
	st := open(t, srv.Addr(), newPrefix())
	ctx := t.Context()
	const requests, pollsEach = 50, 8
	ids := make([]string, requests)
	for i := range ids {
		r := storetest.NewRequest()
		r.BindingMessage = r.ID // each answer names its request
		if err := st.CreateRequest(ctx, r); err != nil {
			t.Fatal(err)
		}
		ids[i] = r.ID
	}
	rule := ciba.PaceRule{Now: time.Now(), Step: 5 * time.Second, Initial: 5 * time.Second}
	slow := make([][]bool, requests)
	var wg sync.WaitGroup
	for i, id := range ids {
		slow[i] = make([]bool, pollsEach)
		for j := range pollsEach {
			wg.Go(func() {
				r, s, err := st.readAndPace(ctx, id, rule)
				if err != nil {
					t.Errorf("poll %d of %s: %v", j, id, err)
					return
				}
				if r.ID != id || r.BindingMessage != id {
					t.Errorf("poll of %s answered request %s", id, r.ID)
				}
				slow[i][j] = s
			})
		}
	}
	wg.Wait()
	for i, id := range ids {
		onTime := 0
		for _, s := range slow[i] {
			if !s {
				onTime++
			}
		}
		if onTime != 1 {
			t.Errorf("request %s: %d of %d simultaneous polls on time, want exactly 1", id, onTime, pollsEach)
		}
	}
}

// TestPollAfterScriptCacheFlush: a poll still works after Redis lost its
// script cache (as after a restart without persistence of scripts).
func TestPollAfterScriptCacheFlush(t *testing.T) {
	srv := redistest.Start(t)
	st := open(t, srv.Addr(), newPrefix())
	ctx := t.Context()
	r := storetest.NewRequest()
	if err := st.CreateRequest(ctx, r); err != nil {
		t.Fatal(err)
	}
	rule := ciba.PaceRule{Now: time.Now(), Initial: time.Second}
	if _, _, err := st.readAndPace(ctx, r.ID, rule); err != nil {
		t.Fatal(err)
	}
	if err := rawClient(t, srv.Addr()).ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	rule.Now = rule.Now.Add(time.Minute)
	if got, slow, err := st.readAndPace(ctx, r.ID, rule); err != nil || got.ID != r.ID || slow {
		t.Fatalf("poll after SCRIPT FLUSH: %v, slow=%v, %v", got, slow, err)
	}
}

// TestPollCallerGivesUpAndStoreCloses: a caller whose context is done gets
// its error, and after Close a poll fails as unavailable, without waiting.
func TestPollCallerGivesUpAndStoreCloses(t *testing.T) {
	srv := redistest.Start(t)
	st := open(t, srv.Addr(), newPrefix())
	r := storetest.NewRequest()
	if err := st.CreateRequest(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, _, err := st.readAndPace(ctx, r.ID, ciba.PaceRule{Now: time.Now()}); err == nil {
		t.Fatal("a poll with a cancelled context succeeded")
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.readAndPace(t.Context(), r.ID, ciba.PaceRule{Now: time.Now()}); !errors.Is(err, ciba.ErrUnavailable) {
		t.Fatalf("poll after Close: %v, want an error wrapping ErrUnavailable", err)
	}
}
