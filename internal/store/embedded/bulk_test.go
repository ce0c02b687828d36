package embedded

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/store/memory"
	"github.com/cibaproxy/cibaproxy/internal/store/storetest"
)

// TestBulkWriteFileLoads: what a memory store journaled by Bulk holds is
// what Open loads from the file WriteFile wrote, next to what the file held
// already: requests created, updated and deleted, and records, of which
// the file's own win.
func TestBulkWriteFileLoads(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "store.db")
	defer func(n int) { bulkChunk = n }(bulkChunk)
	bulkChunk = 7 // several transactions

	// The file holds a request and a record already (a server ran on it).
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	before := storetest.NewRequest()
	if err := s.CreateRequest(ctx, before); err != nil {
		t.Fatal(err)
	}
	if err := s.PutRecord(ctx, "key", "signing", []byte("the server's"), 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	bulk := NewBulk()
	mem := memory.New(memory.WithJournal(bulk))
	var created []*ciba.AuthRequest
	for range 120 {
		r := storetest.NewRequest()
		if err := mem.CreateRequest(ctx, r); err != nil {
			t.Fatal(err)
		}
		created = append(created, r)
	}
	updated, err := mem.UpdateRequest(ctx, created[0].ID, func(r *ciba.AuthRequest) error {
		r.Status = ciba.StatusApproved
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := mem.DeleteRequest(ctx, created[1].ID); err != nil {
		t.Fatal(err)
	}
	if err := mem.PutRecord(ctx, "key", "signing", []byte("the seeder's"), 0); err != nil {
		t.Fatal(err)
	}
	if err := mem.PutRecord(ctx, "note", "a", []byte("kept"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if got := bulk.Requests(); got != 119 {
		t.Fatalf("Requests() = %d, want 119 (120 created, 1 deleted)", got)
	}
	if err := bulk.WriteFile(ctx, path); err != nil {
		t.Fatalf("WriteFile: %v", err)
	}

	s = open(t, path)
	n := 0
	if err := s.ListRequests(ctx, func(*ciba.AuthRequest) bool { n++; return true }); err != nil {
		t.Fatal(err)
	}
	if n != 120 {
		t.Errorf("the file holds %d requests, want 120 (1 before, 119 written)", n)
	}
	for _, r := range append([]*ciba.AuthRequest{before}, created[2:]...) {
		got, err := s.GetRequest(ctx, r.ID)
		if err != nil {
			t.Fatalf("GetRequest(%s): %v", r.ID, err)
		}
		if got.Status != r.Status || got.ClientID != r.ClientID {
			t.Errorf("request %s: got status %q client %q, want %q %q", r.ID, got.Status, got.ClientID, r.Status, r.ClientID)
		}
	}
	if got, err := s.GetRequest(ctx, updated.ID); err != nil || got.Status != ciba.StatusApproved {
		t.Errorf("the updated request: %v, %v; want it approved", got, err)
	}
	if _, err := s.GetRequest(ctx, created[1].ID); !errors.Is(err, ciba.ErrNotFound) {
		t.Errorf("the deleted request: got %v, want ErrNotFound", err)
	}
	if v, err := s.GetRecord(ctx, "key", "signing"); err != nil || string(v) != "the server's" {
		t.Errorf("the file's own record: %q, %v; want it kept", v, err)
	}
	if v, err := s.GetRecord(ctx, "note", "a"); err != nil || string(v) != "kept" {
		t.Errorf("a new record: %q, %v", v, err)
	}
}

// TestBulkWriteFileLocked: WriteFile fails, naming the file, while a store
// has it open.
func TestBulkWriteFileLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.db")
	open(t, path)
	err := NewBulk().WriteFile(t.Context(), path)
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("WriteFile on an open file: got %v, want an error naming it", err)
	}
}
