// Package storetest is the conformance suite of ciba.Store: every backend
// runs it from its own tests, and a backend is done when it passes.
//
// Each subtest is named after the part of the contract it checks, opens a
// fresh store, and runs in parallel with the others. Sleeps are used only to
// let records expire; nothing asserts how long anything took.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// wakeTimeout bounds the wait for a subscription to fire. It only turns a
// hang into a failure; passing tests never wait for it.
const wakeTimeout = 10 * time.Second

// Run runs the suite. open must return a new, empty store; Run closes it
// (maybe twice), and open may also register its own cleanup.
func Run(t *testing.T, open func(t *testing.T) ciba.Store) {
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := open(t)
			t.Cleanup(func() { _ = s.Close() })
			tc.fn(t, s)
		})
	}
}

var tests = []struct {
	name string
	fn   func(t *testing.T, s ciba.Store)
}{
	// Requests.
	{"CreateRequest then GetRequest returns an equal request", testCreateGet},
	{"GetRequest returns a copy: changing it changes nothing stored", testGetReturnsCopy},
	{"CreateRequest keeps a copy: changing the argument afterwards changes nothing stored", testCreateKeepsCopy},
	{"GetRequest of an unknown ID is ErrNotFound", testGetUnknown},
	{"CreateRequest rejects a duplicate ID", testCreateDuplicateID},
	{"CreateRequest rejects a duplicate ApprovalID", testCreateDuplicateApprovalID},
	{"CreateRequest admits exactly one of 20 concurrent creators of an ID", testCreateConcurrent},
	{"GetRequestByApprovalID returns the request with that ApprovalID", testGetByApprovalID},
	{"GetRequestByApprovalID of an unknown ApprovalID or of an auth_req_id is ErrNotFound", testGetByApprovalIDUnknown},
	{"UpdateRequest applies the updater and returns the stored result", testUpdate},
	{"an updater error writes nothing and is returned", testUpdateError},
	{"UpdateRequest of an unknown ID is ErrNotFound and does not call the updater", testUpdateUnknown},
	{"UpdateRequest refuses an updater that changes ID or ApprovalID", testUpdateImmutableIDs},
	{"UpdateRequest is a compare-and-set: 100 concurrent updaters all apply", testUpdateConcurrent},
	{"of 20 concurrent Redeems exactly one gets the token response", testRedeemOnce},
	{"DeleteRequest removes the request, its ApprovalID and its pace state", testDelete},
	{"DeleteRequest of an unknown ID is ErrNotFound", testDeleteUnknown},
	{"ListRequests visits every request once, as copies", testList},
	{"ListRequests stops when fn returns false", testListStops},
	{"ListRequests is safe while other goroutines write", testListConcurrent},
	{"the client certificate thumbprint survives create, update, list and redeem", testCertThumbprint},
	{"the DPoP key thumbprint survives create, update and a poll of the decided request", testDPoPJKT},
	{"the approved authorization_details digest is recorded with the decision and kept byte for byte with the details", testApprovedDetails},
	{"a device request's authorization_details, resources, actor and approved digest survive create, the approving update, list and poll", testDeviceDetails},

	// Pace.
	{"UpdatePace starts from a zero Pace and keeps the result", testPace},
	{"UpdatePace of an unknown request is ErrNotFound", testPaceUnknown},
	{"an UpdatePace updater error writes nothing and is returned", testPaceError},
	{"UpdatePace is atomic: 100 concurrent updaters all apply", testPaceConcurrent},
	{"pace state is kept apart from the request", testPaceApart},
	{"the store's poll path paces held polls and their release as ciba.PaceRule does", testPaceHeld},

	// Poll.
	{"Poll of an unknown id is PollUnknown", testPollUnknown},
	{"Poll paces on-time and early polls as ciba.PaceRule does, from the request's interval", testPollPace},
	{"an early Poll is PollSlow and grows the interval by the step", testPollSlowGrows},
	{"a Poll while another is held is PollSlow; an on-time one is held up to the expiry", testPollHeld},
	{"Poll by another client is PollUnknown and leaves the pace unchanged", testPollForeign},
	{"Poll for another grant is PollUnknown and leaves the pace unchanged", testPollKind},
	{"Poll over another certificate is PollWrongCert and leaves the pace unchanged", testPollCert},
	{"Poll with another DPoP key or none is PollWrongKey, pending or decided, and leaves the pace unchanged; a key for an unbound request is PollUnboundKey (RFC 9449 §10)", testPollKey},
	{"Poll with CheckOnly checks and paces nothing", testPollCheckOnly},
	{"Poll of an expired or decided request is PollDone with the request", testPollDone},
	{"of 20 concurrent on-time Polls exactly one is on time", testPollConcurrent},
	{"Poll of a deleted request is PollUnknown", testPollDeleted},

	// Dispatch views.
	{"ListSweep visits the sweep view of every request", testListSweep},
	{"ListDue lists only ids of stored requests", testListDue},

	// Subscriptions.
	{"Subscribe wakes after UpdateRequest", testSubscribeUpdate},
	{"Subscribe wakes after DeleteRequest", testSubscribeDelete},
	{"Subscribe wakes every subscriber of the request", testSubscribeAll},
	{"Subscribe does not wake for another request or a failed update", testSubscribeNoWake},
	{"a cancelled subscription is not woken, and cancelling twice is harmless", testSubscribeCancel},
	{"a subscriber that does not read never blocks UpdateRequest", testSubscribeSlowReader},
	{"SubscribeFunc calls its function after UpdateRequest, not once stopped", testSubscribeFunc},

	// Records.
	{"PutRecord then GetRecord returns the value", testRecord},
	{"Web Push: the VAPID key is made on first use and the same for every later load", testVAPIDKey},
	{"Web Push: subscriptions are kept per user, replaced by endpoint, bounded, removed", testSubscriptions},
	{"Web Push: 30 concurrent subscriptions of one user from different browsers are all kept", testSubscriptionsConcurrent},
	{"Web Push: the cap on one user's subscriptions holds under a burst of 30", testSubscriptionsBurstCap},
	{"Web Push: a subscription racing the removal of another is kept", testSubscriptionsAddRacesRemove},
	{"Web Push: a subscription is removed by its short id, or all of them", testSubscriptionsRemoveByID},
	{"PutRecord of a present unexpired key is ErrExists and keeps the first value", testRecordExists},
	{"records are namespaced by kind", testRecordKinds},
	{"GetRecord and TakeRecord of an unknown key are ErrNotFound", testRecordUnknown},
	{"TakeRecord returns the record and deletes it", testTake},
	{"TakeRecord hands a record out exactly once under 50 concurrent takers", testTakeConcurrent},
	{"PutRecord admits exactly one of 50 concurrent writers of a key", testPutConcurrent},
	{"expired records are absent, and PutRecord over one succeeds", testRecordExpiry},
	{"GetRecord returns a copy and PutRecord keeps a copy", testRecordCopies},
	{"an empty record value is stored", testRecordEmpty},
	{"token revocation marks: one of 20 concurrent revokers writes the mark, which every read then sees", testRevocationMarks},
	{"SwapRecord creates, replaces and deletes only over the value it was given", testSwap},
	{"SwapRecord lets exactly one of 50 concurrent swappers of the same value win", testSwapConcurrent},
	{"SwapRecord counts an expired record as absent and writes without lifetime", testSwapExpired},

	// Context and Close.
	{"a write with a cancelled context fails and changes nothing", testCancelledContext},
	{"after Close every call fails with ErrUnavailable", testClosed},
}

// randomID returns 144 random bits, base64url-encoded.
func randomID() string {
	b := make([]byte, 18)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

// NewRequest returns a pending poll-mode request with random ID and
// ApprovalID and every field set, for tests of backends.
func NewRequest() *ciba.AuthRequest {
	now := time.Now().UTC().Round(0) // no monotonic reading: compares after a round trip
	return &ciba.AuthRequest{
		ID:                randomID(),
		ApprovalID:        randomID(),
		ClientID:          "client-1",
		Mode:              ciba.ModePoll,
		Kind:              ciba.KindDevice,
		Subject:           "alice",
		LoginHint:         "alice@example.com",
		Scopes:            []string{"openid", "email"},
		ACRValues:         []string{"urn:example:acr:mfa"},
		BindingMessage:    "W4SCT",
		UserCodeHash:      "n4bQgYhMfWWaL-qgxVrQFaO_TxsrC4Is0V1sFbDwCgg",
		NotificationToken: "8d67dc78-7faa-4d41-aabd-67707b374255",
		CreatedAt:         now,
		ExpiresAt:         now.Add(5 * time.Minute),
		Interval:          5 * time.Second,
		Status:            ciba.StatusPending,
		UserNotice:        ciba.Delivery{Due: true, Attempts: 1, NextAttempt: now.Add(time.Second), LastError: "timeout"},
		ClientNotice:      ciba.Delivery{},
		Relay: ciba.RelayState{ID: []byte("sealed-upstream-id"), Interval: 5 * time.Second, NextPoll: now.Add(5 * time.Second),
			Polls: 1, Failures: 2, LastError: "connection refused"},
		TraceParent:    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		CertThumbprint: "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2",
		// Canonical JSON with a number a JSON round trip through float64
		// would rewrite (123.50): a store keeps it byte for byte.
		AuthzDetails:   `[{"creditorName":"Merchant A","instructedAmount":{"amount":123.50,"currency":"EUR"},"type":"payment_initiation"}]`,
		Actor:          "client-1",
		ApprovalRecord: "eyJhbGciOiJFUzI1NiJ9.e30.c2ln",
	}
}

// normalize makes requests comparable with reflect.DeepEqual whatever the
// backend's encoding: times in UTC without monotonic reading, empty slices
// nil.
func normalize(r *ciba.AuthRequest) *ciba.AuthRequest {
	c := *r
	for _, tp := range []*time.Time{&c.CreatedAt, &c.ExpiresAt, &c.DecidedAt, &c.AuthTime, &c.UserNotice.NextAttempt, &c.ClientNotice.NextAttempt, &c.Relay.NextPoll} {
		*tp = tp.UTC().Round(0)
	}
	if len(c.Scopes) == 0 {
		c.Scopes = nil
	}
	if len(c.ACRValues) == 0 {
		c.ACRValues = nil
	}
	if len(c.Result) == 0 {
		c.Result = nil
	}
	if len(c.Relay.ID) == 0 {
		c.Relay.ID = nil
	}
	return &c
}

// SameRequest reports whether two requests are equal up to representation
// (time zones, monotonic readings, nil versus empty slices).
func SameRequest(a, b *ciba.AuthRequest) bool {
	return reflect.DeepEqual(normalize(a), normalize(b))
}

// mustCreate creates r or fails the test.
func mustCreate(t *testing.T, s ciba.Store, r *ciba.AuthRequest) {
	t.Helper()
	if err := s.CreateRequest(t.Context(), r); err != nil {
		t.Fatalf("CreateRequest: %v", err)
	}
}

// mustGet returns the request id or fails the test.
func mustGet(t *testing.T, s ciba.Store, id string) *ciba.AuthRequest {
	t.Helper()
	r, err := s.GetRequest(t.Context(), id)
	if err != nil {
		t.Fatalf("GetRequest: %v", err)
	}
	return r
}

// wantSame fails the test unless got equals want.
func wantSame(t *testing.T, what string, got, want *ciba.AuthRequest) {
	t.Helper()
	if !SameRequest(got, want) {
		t.Fatalf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

// wantErr fails the test unless errors.Is(err, target).
func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want one wrapping %v", what, err, target)
	}
}

// wantRecord fails the test unless kind/key holds value.
func wantRecord(t *testing.T, s ciba.Store, kind, key, value string) {
	t.Helper()
	got, err := s.GetRecord(t.Context(), kind, key)
	if err != nil {
		t.Fatalf("GetRecord(%s, %s): %v", kind, key, err)
	}
	if string(got) != value {
		t.Fatalf("GetRecord(%s, %s) = %q, want %q", kind, key, got, value)
	}
}

// waitWake fails the test unless ch fires.
func waitWake(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(wakeTimeout):
		t.Fatalf("%s: the subscription was not woken", what)
	}
}

// noWake fails the test if ch holds a value.
func noWake(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
		t.Fatalf("%s: the subscription was woken", what)
	default:
	}
}

func testCreateGet(t *testing.T, s ciba.Store) {
	r := NewRequest()
	r.Result = []byte("sealed")
	mustCreate(t, s, r)
	wantSame(t, "GetRequest", mustGet(t, s, r.ID), r)
}

func testGetReturnsCopy(t *testing.T, s ciba.Store) {
	r := NewRequest()
	r.Result = []byte("sealed")
	mustCreate(t, s, r)
	got := mustGet(t, s, r.ID)
	got.Status = ciba.StatusDenied
	got.Scopes[0] = "changed"
	got.ACRValues[0] = "changed"
	got.Result[0] = 'X'
	wantSame(t, "GetRequest after changing an earlier result", mustGet(t, s, r.ID), r)
}

func testCreateKeepsCopy(t *testing.T, s ciba.Store) {
	r := NewRequest()
	r.Result = []byte("sealed")
	want := r.Clone()
	mustCreate(t, s, r)
	r.Status = ciba.StatusDenied
	r.Scopes[0] = "changed"
	r.Result[0] = 'X'
	wantSame(t, "GetRequest after changing the created value", mustGet(t, s, want.ID), want)
}

func testGetUnknown(t *testing.T, s ciba.Store) {
	_, err := s.GetRequest(t.Context(), randomID())
	wantErr(t, "GetRequest", err, ciba.ErrNotFound)
}

func testCreateDuplicateID(t *testing.T, s ciba.Store) {
	r := NewRequest()
	mustCreate(t, s, r)
	dup := NewRequest()
	dup.ID = r.ID
	dup.Subject = "mallory"
	wantErr(t, "CreateRequest with a taken ID", s.CreateRequest(t.Context(), dup), ciba.ErrExists)
	wantSame(t, "the first request", mustGet(t, s, r.ID), r)
	_, err := s.GetRequestByApprovalID(t.Context(), dup.ApprovalID)
	wantErr(t, "GetRequestByApprovalID of the refused request", err, ciba.ErrNotFound)
}

func testCreateDuplicateApprovalID(t *testing.T, s ciba.Store) {
	r := NewRequest()
	mustCreate(t, s, r)
	dup := NewRequest()
	dup.ApprovalID = r.ApprovalID
	wantErr(t, "CreateRequest with a taken ApprovalID", s.CreateRequest(t.Context(), dup), ciba.ErrExists)
	_, err := s.GetRequest(t.Context(), dup.ID)
	wantErr(t, "GetRequest of the refused request", err, ciba.ErrNotFound)
	got, err := s.GetRequestByApprovalID(t.Context(), r.ApprovalID)
	if err != nil {
		t.Fatalf("GetRequestByApprovalID: %v", err)
	}
	wantSame(t, "the owner of the ApprovalID", got, r)
	// The refused request left nothing behind: its ID is free.
	dup.ApprovalID = randomID()
	mustCreate(t, s, dup)
}

func testCreateConcurrent(t *testing.T, s ciba.Store) {
	id := randomID()
	var wg sync.WaitGroup
	var ok, exists atomic.Int32
	winner := make(chan *ciba.AuthRequest, 20)
	for range 20 {
		wg.Go(func() {
			r := NewRequest()
			r.ID = id
			err := s.CreateRequest(context.Background(), r)
			switch {
			case err == nil:
				ok.Add(1)
				winner <- r
			case errors.Is(err, ciba.ErrExists):
				exists.Add(1)
			default:
				t.Errorf("CreateRequest: %v", err)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 1 || exists.Load() != 19 {
		t.Fatalf("%d creates succeeded and %d got ErrExists, want 1 and 19", ok.Load(), exists.Load())
	}
	wantSame(t, "the stored request", mustGet(t, s, id), <-winner)
}

func testGetByApprovalID(t *testing.T, s ciba.Store) {
	r, other := NewRequest(), NewRequest()
	mustCreate(t, s, r)
	mustCreate(t, s, other)
	got, err := s.GetRequestByApprovalID(t.Context(), r.ApprovalID)
	if err != nil {
		t.Fatalf("GetRequestByApprovalID: %v", err)
	}
	wantSame(t, "GetRequestByApprovalID", got, r)
	got.Status = ciba.StatusDenied
	wantSame(t, "GetRequest after changing the result of GetRequestByApprovalID", mustGet(t, s, r.ID), r)
}

func testGetByApprovalIDUnknown(t *testing.T, s ciba.Store) {
	r := NewRequest()
	mustCreate(t, s, r)
	_, err := s.GetRequestByApprovalID(t.Context(), randomID())
	wantErr(t, "GetRequestByApprovalID of an unknown id", err, ciba.ErrNotFound)
	// The auth_req_id must never open the approval page.
	_, err = s.GetRequestByApprovalID(t.Context(), r.ID)
	wantErr(t, "GetRequestByApprovalID of an auth_req_id", err, ciba.ErrNotFound)
	_, err = s.GetRequest(t.Context(), r.ApprovalID)
	wantErr(t, "GetRequest of an ApprovalID", err, ciba.ErrNotFound)
}

func testUpdate(t *testing.T, s ciba.Store) {
	r := NewRequest()
	mustCreate(t, s, r)
	now := time.Now().UTC().Round(0)
	got, err := s.UpdateRequest(t.Context(), r.ID, func(cur *ciba.AuthRequest) error {
		if !SameRequest(cur, r) {
			t.Errorf("the updater got %+v, want %+v", cur, r)
		}
		return cur.Approve(now, now, []byte("sealed"))
	})
	if err != nil {
		t.Fatalf("UpdateRequest: %v", err)
	}
	want := r.Clone()
	if err := want.Approve(now, now, []byte("sealed")); err != nil {
		t.Fatal(err)
	}
	wantSame(t, "the result of UpdateRequest", got, want)
	wantSame(t, "GetRequest after UpdateRequest", mustGet(t, s, r.ID), want)
	got.Result[0] = 'X'
	wantSame(t, "GetRequest after changing the result of UpdateRequest", mustGet(t, s, r.ID), want)
}

// testCertThumbprint: a request bound to a client certificate (RFC 8705
// §3) stays bound through every change, or its tokens would be handed out
// without the certificate.
func testCertThumbprint(t *testing.T, s ciba.Store) {
	const tp = "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"
	r := NewRequest()
	r.CertThumbprint = tp
	mustCreate(t, s, r)
	if got := mustGet(t, s, r.ID).CertThumbprint; got != tp {
		t.Fatalf("GetRequest: CertThumbprint = %q, want %q", got, tp)
	}
	now := time.Now().UTC().Round(0)
	got, err := s.UpdateRequest(t.Context(), r.ID, func(cur *ciba.AuthRequest) error {
		if cur.CertThumbprint != tp {
			t.Errorf("the updater got CertThumbprint %q, want %q", cur.CertThumbprint, tp)
		}
		return cur.Approve(now, now, []byte("sealed"))
	})
	if err != nil {
		t.Fatalf("UpdateRequest: %v", err)
	}
	if got.CertThumbprint != tp {
		t.Fatalf("UpdateRequest result: CertThumbprint = %q, want %q", got.CertThumbprint, tp)
	}
	if _, err := s.UpdateRequest(t.Context(), r.ID, func(cur *ciba.AuthRequest) error {
		_, err := cur.Redeem(now)
		return err
	}); err != nil {
		t.Fatalf("redeem: %v", err)
	}
	if got := mustGet(t, s, r.ID); got.CertThumbprint != tp || got.Status != ciba.StatusRedeemed {
		t.Fatalf("after redeem: CertThumbprint = %q, status %s", got.CertThumbprint, got.Status)
	}
	found := false
	if err := s.ListRequests(t.Context(), func(l *ciba.AuthRequest) bool {
		if l.ID == r.ID {
			found = l.CertThumbprint == tp
		}
		return true
	}); err != nil {
		t.Fatalf("ListRequests: %v", err)
	}
	if !found {
		t.Fatalf("ListRequests did not give the request with CertThumbprint %q", tp)
	}
	// Another request without a certificate stays unbound.
	u := NewRequest()
	u.CertThumbprint = ""
	mustCreate(t, s, u)
	if got := mustGet(t, s, u.ID).CertThumbprint; got != "" {
		t.Fatalf("an unbound request came back bound to %q", got)
	}
}

func testUpdateError(t *testing.T, s ciba.Store) {
	r := NewRequest()
	mustCreate(t, s, r)
	errRefused := errors.New("refused")
	got, err := s.UpdateRequest(t.Context(), r.ID, func(cur *ciba.AuthRequest) error {
		cur.Status = ciba.StatusDenied
		cur.Scopes[0] = "changed"
		return errRefused
	})
	wantErr(t, "UpdateRequest", err, errRefused)
	if got != nil {
		t.Errorf("UpdateRequest returned %+v with its error", got)
	}
	wantSame(t, "GetRequest after a failed update", mustGet(t, s, r.ID), r)
	// A protocol error keeps its type for the caller.
	_, err = s.UpdateRequest(t.Context(), r.ID, func(cur *ciba.AuthRequest) error {
		_, err := cur.Redeem(time.Now())
		return err
	})
	var pe *ciba.Error
	if !errors.As(err, &pe) || pe.Code != ciba.CodeAuthorizationPending {
		t.Fatalf("UpdateRequest with Redeem of a pending request: got %v, want authorization_pending", err)
	}
}

func testUpdateUnknown(t *testing.T, s ciba.Store) {
	called := false
	_, err := s.UpdateRequest(t.Context(), randomID(), func(*ciba.AuthRequest) error {
		called = true
		return nil
	})
	wantErr(t, "UpdateRequest", err, ciba.ErrNotFound)
	if called {
		t.Fatal("the updater was called for an unknown request")
	}
}

func testUpdateImmutableIDs(t *testing.T, s ciba.Store) {
	r := NewRequest()
	mustCreate(t, s, r)
	newID, newApprovalID := randomID(), randomID()
	if _, err := s.UpdateRequest(t.Context(), r.ID, func(cur *ciba.AuthRequest) error {
		cur.ID = newID
		return nil
	}); err == nil {
		t.Fatal("UpdateRequest accepted a change of ID")
	}
	if _, err := s.UpdateRequest(t.Context(), r.ID, func(cur *ciba.AuthRequest) error {
		cur.ApprovalID = newApprovalID
		cur.Status = ciba.StatusDenied
		return nil
	}); err == nil {
		t.Fatal("UpdateRequest accepted a change of ApprovalID")
	}
	wantSame(t, "GetRequest", mustGet(t, s, r.ID), r)
	for what, get := range map[string]func() error{
		"GetRequest of the new ID": func() error {
			_, err := s.GetRequest(t.Context(), newID)
			return err
		},
		"GetRequestByApprovalID of the new ApprovalID": func() error {
			_, err := s.GetRequestByApprovalID(t.Context(), newApprovalID)
			return err
		},
	} {
		wantErr(t, what, get(), ciba.ErrNotFound)
	}
	got, err := s.GetRequestByApprovalID(t.Context(), r.ApprovalID)
	if err != nil {
		t.Fatalf("GetRequestByApprovalID of the old ApprovalID: %v", err)
	}
	wantSame(t, "GetRequestByApprovalID", got, r)
}

func testUpdateConcurrent(t *testing.T, s ciba.Store) {
	r := NewRequest()
	r.UserNotice = ciba.Delivery{}
	mustCreate(t, s, r)
	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() {
			if _, err := s.UpdateRequest(context.Background(), r.ID, func(cur *ciba.AuthRequest) error {
				cur.UserNotice.Attempts++
				return nil
			}); err != nil {
				t.Errorf("UpdateRequest: %v", err)
			}
		})
	}
	wg.Wait()
	if got := mustGet(t, s, r.ID).UserNotice.Attempts; got != 100 {
		t.Fatalf("after 100 concurrent increments Attempts = %d, want 100", got)
	}
}

func testRedeemOnce(t *testing.T, s ciba.Store) {
	r := NewRequest()
	now := time.Now()
	if err := r.Approve(now, now, []byte("sealed token response")); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, r)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var got [][]byte
	var invalidGrant int
	for range 20 {
		wg.Go(func() {
			var sealed []byte
			_, err := s.UpdateRequest(context.Background(), r.ID, func(cur *ciba.AuthRequest) error {
				var err error
				sealed, err = cur.Redeem(time.Now())
				return err
			})
			mu.Lock()
			defer mu.Unlock()
			var pe *ciba.Error
			switch {
			case err == nil:
				got = append(got, sealed)
			case errors.As(err, &pe) && pe.Code == ciba.CodeInvalidGrant:
				invalidGrant++
			default:
				t.Errorf("UpdateRequest with Redeem: %v", err)
			}
		})
	}
	wg.Wait()
	if len(got) != 1 || invalidGrant != 19 {
		t.Fatalf("%d Redeems got the token response and %d got invalid_grant, want 1 and 19", len(got), invalidGrant)
	}
	if string(got[0]) != "sealed token response" {
		t.Fatalf("Redeem got %q", got[0])
	}
	final := mustGet(t, s, r.ID)
	if final.Status != ciba.StatusRedeemed || len(final.Result) != 0 {
		t.Fatalf("after Redeem: status %s, %d bytes of result; want redeemed and none", final.Status, len(final.Result))
	}
}

func testDelete(t *testing.T, s ciba.Store) {
	ctx := t.Context()
	r, other := NewRequest(), NewRequest()
	mustCreate(t, s, r)
	mustCreate(t, s, other)
	if _, err := s.UpdatePace(ctx, r.ID, func(p *ciba.Pace) error {
		p.Interval = time.Minute
		return nil
	}); err != nil {
		t.Fatalf("UpdatePace: %v", err)
	}
	if err := s.DeleteRequest(ctx, r.ID); err != nil {
		t.Fatalf("DeleteRequest: %v", err)
	}
	_, err := s.GetRequest(ctx, r.ID)
	wantErr(t, "GetRequest after DeleteRequest", err, ciba.ErrNotFound)
	_, err = s.GetRequestByApprovalID(ctx, r.ApprovalID)
	wantErr(t, "GetRequestByApprovalID after DeleteRequest", err, ciba.ErrNotFound)
	_, err = s.UpdateRequest(ctx, r.ID, func(*ciba.AuthRequest) error { return nil })
	wantErr(t, "UpdateRequest after DeleteRequest", err, ciba.ErrNotFound)
	_, err = s.UpdatePace(ctx, r.ID, func(*ciba.Pace) error { return nil })
	wantErr(t, "UpdatePace after DeleteRequest", err, ciba.ErrNotFound)
	wantSame(t, "the other request", mustGet(t, s, other.ID), other)
	// Created again, the request starts with no pace state.
	mustCreate(t, s, r)
	p, err := s.UpdatePace(ctx, r.ID, func(p *ciba.Pace) error {
		if *p != (ciba.Pace{}) {
			t.Errorf("UpdatePace of a re-created request got %+v, want a zero Pace", *p)
		}
		return nil
	})
	if err != nil || p != (ciba.Pace{}) {
		t.Fatalf("UpdatePace of a re-created request: %+v, %v", p, err)
	}
}

func testDeleteUnknown(t *testing.T, s ciba.Store) {
	wantErr(t, "DeleteRequest of an unknown ID", s.DeleteRequest(t.Context(), randomID()), ciba.ErrNotFound)
	r := NewRequest()
	mustCreate(t, s, r)
	if err := s.DeleteRequest(t.Context(), r.ID); err != nil {
		t.Fatalf("DeleteRequest: %v", err)
	}
	wantErr(t, "DeleteRequest a second time", s.DeleteRequest(t.Context(), r.ID), ciba.ErrNotFound)
}

func testList(t *testing.T, s ciba.Store) {
	want := map[string]*ciba.AuthRequest{}
	for range 50 {
		r := NewRequest()
		mustCreate(t, s, r)
		want[r.ID] = r
	}
	gone := NewRequest()
	mustCreate(t, s, gone)
	if err := s.DeleteRequest(t.Context(), gone.ID); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	if err := s.ListRequests(t.Context(), func(r *ciba.AuthRequest) bool {
		w, ok := want[r.ID]
		switch {
		case !ok:
			t.Errorf("ListRequests gave an unknown or deleted request %s", r.ID)
		case seen[r.ID]:
			t.Errorf("ListRequests gave %s twice", r.ID)
		case !SameRequest(r, w):
			t.Errorf("ListRequests gave %+v, want %+v", r, w)
		}
		seen[r.ID] = true
		r.Status = ciba.StatusDenied // a copy: must not change the store
		return true
	}); err != nil {
		t.Fatalf("ListRequests: %v", err)
	}
	if len(seen) != len(want) {
		t.Fatalf("ListRequests gave %d requests, want %d", len(seen), len(want))
	}
	for id, w := range want {
		wantSame(t, "GetRequest after ListRequests", mustGet(t, s, id), w)
	}
}

func testListStops(t *testing.T, s ciba.Store) {
	for range 5 {
		mustCreate(t, s, NewRequest())
	}
	calls := 0
	if err := s.ListRequests(t.Context(), func(*ciba.AuthRequest) bool {
		calls++
		return calls < 2
	}); err != nil {
		t.Fatalf("ListRequests: %v", err)
	}
	if calls != 2 {
		t.Fatalf("fn was called %d times after returning false on the 2nd call", calls)
	}
}

func testListConcurrent(t *testing.T, s ciba.Store) {
	stable := map[string]bool{}
	for range 20 {
		r := NewRequest()
		mustCreate(t, s, r)
		stable[r.ID] = true
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				r := NewRequest()
				if err := s.CreateRequest(ctx, r); err != nil {
					if ctx.Err() == nil {
						t.Errorf("CreateRequest: %v", err)
					}
					return
				}
				if _, err := s.UpdateRequest(ctx, r.ID, func(cur *ciba.AuthRequest) error {
					cur.UserNotice.Attempts++
					return nil
				}); err != nil && ctx.Err() == nil {
					t.Errorf("UpdateRequest: %v", err)
				}
				if err := s.DeleteRequest(ctx, r.ID); err != nil && ctx.Err() == nil {
					t.Errorf("DeleteRequest: %v", err)
				}
			}
		})
	}
	for range 10 {
		seen := 0
		if err := s.ListRequests(t.Context(), func(r *ciba.AuthRequest) bool {
			if stable[r.ID] {
				seen++
			}
			return true
		}); err != nil {
			t.Errorf("ListRequests: %v", err)
		}
		if seen != len(stable) {
			t.Errorf("ListRequests saw %d of the %d requests that existed throughout", seen, len(stable))
		}
	}
	cancel()
	wg.Wait()
}

func testPace(t *testing.T, s ciba.Store) {
	r := NewRequest()
	mustCreate(t, s, r)
	at := time.Now().UTC().Round(0)
	p, err := s.UpdatePace(t.Context(), r.ID, func(p *ciba.Pace) error {
		if *p != (ciba.Pace{}) {
			t.Errorf("first UpdatePace got %+v, want a zero Pace", *p)
		}
		p.Interval = r.Interval
		p.NotBefore = at
		return nil
	})
	want := ciba.Pace{Interval: r.Interval, NotBefore: at}
	if err != nil || !samePace(p, want) {
		t.Fatalf("UpdatePace = %+v, %v; want %+v", p, err, want)
	}
	p, err = s.UpdatePace(t.Context(), r.ID, func(p *ciba.Pace) error {
		if !samePace(*p, want) {
			t.Errorf("second UpdatePace got %+v, want %+v", *p, want)
		}
		p.HoldUntil = at.Add(time.Second)
		return nil
	})
	want.HoldUntil = at.Add(time.Second)
	if err != nil || !samePace(p, want) {
		t.Fatalf("UpdatePace = %+v, %v; want %+v", p, err, want)
	}
}

// storePoll paces a poll of request r by rule through the store's poll
// method, as the service does, by r's own client, and returns whether it
// was early; it fails the test unless the answer is pending or slow.
func storePoll(t *testing.T, s ciba.Store, r *ciba.AuthRequest, rule ciba.PaceRule) bool {
	t.Helper()
	res, err := s.Poll(t.Context(), r.ID, ownQuery(r, rule))
	if err != nil || res.Outcome != ciba.PollSlow && res.Outcome != ciba.PollPending {
		t.Fatalf("poll at %v: %+v, %v; want pending or slow", rule.Now, res, err)
	}
	return res.Outcome == ciba.PollSlow
}

// testPaceHeld runs sequences of held polls, their release (by UpdatePace
// with PaceRule.Release, as the service ends a hold) and the next polls
// through the store's poll path and through ciba.PaceRule on a local Pace,
// and wants the same answers and the same pace state from both.
func testPaceHeld(t *testing.T, s ciba.Store) {
	t0 := time.Now().Truncate(time.Millisecond)
	rule := func(at time.Duration) ciba.PaceRule {
		return ciba.PaceRule{Now: t0.Add(at), Step: 5 * time.Second, Hold: 20 * time.Second, Initial: 5 * time.Second}
	}
	type step struct {
		poll    time.Duration // a poll at t0+poll
		release time.Duration // or, when set, the release at t0+release of the first poll's hold
	}
	for _, seq := range []struct {
		name  string
		steps []step
		slow  []bool // of the polls
	}{
		{"a poll right after a full hold is on time", []step{{poll: 0}, {release: 20 * time.Second}, {poll: 20 * time.Second}}, []bool{false, false}},
		{"a poll during the hold, and right after a hold cut short, is early",
			[]step{{poll: 0}, {poll: time.Second}, {release: 2 * time.Second}, {poll: 3 * time.Second}}, []bool{false, true, true}},
	} {
		r := NewRequest()
		mustCreate(t, s, r)
		var local ciba.Pace
		var polls int
		for _, st := range seq.steps {
			if st.release != 0 {
				end := t0.Add(st.release)
				rule(0).Release(&local, end)
				if _, err := s.UpdatePace(t.Context(), r.ID, func(p *ciba.Pace) error { rule(0).Release(p, end); return nil }); err != nil {
					t.Fatalf("%s: release: %v", seq.name, err)
				}
				continue
			}
			want := rule(st.poll).Apply(&local)
			if got := storePoll(t, s, r, rule(st.poll)); got != want || got != seq.slow[polls] {
				t.Errorf("%s: poll at +%v: store says slow %v, the rule %v, want %v", seq.name, st.poll, got, want, seq.slow[polls])
			}
			polls++
		}
		got, err := s.UpdatePace(t.Context(), r.ID, func(*ciba.Pace) error { return nil })
		if err != nil || !samePace(got, local) {
			t.Errorf("%s: store pace %+v, %v; the rule's %+v", seq.name, got, err, local)
		}
	}
}

// samePace compares paces by instant, not representation, to the
// millisecond: backends may keep pace times that precisely (ciba.Pace).
func samePace(a, b ciba.Pace) bool {
	ms := func(t time.Time) time.Time { return t.Truncate(time.Millisecond) }
	return a.Interval.Truncate(time.Millisecond) == b.Interval.Truncate(time.Millisecond) &&
		ms(a.NotBefore).Equal(ms(b.NotBefore)) && ms(a.HoldUntil).Equal(ms(b.HoldUntil))
}

func testPaceUnknown(t *testing.T, s ciba.Store) {
	called := false
	_, err := s.UpdatePace(t.Context(), randomID(), func(*ciba.Pace) error {
		called = true
		return nil
	})
	wantErr(t, "UpdatePace", err, ciba.ErrNotFound)
	if called {
		t.Fatal("the updater was called for an unknown request")
	}
}

func testPaceError(t *testing.T, s ciba.Store) {
	r := NewRequest()
	mustCreate(t, s, r)
	errRefused := errors.New("refused")
	_, err := s.UpdatePace(t.Context(), r.ID, func(p *ciba.Pace) error {
		p.Interval = time.Hour
		return errRefused
	})
	wantErr(t, "UpdatePace", err, errRefused)
	if _, err := s.UpdatePace(t.Context(), r.ID, func(p *ciba.Pace) error {
		if *p != (ciba.Pace{}) {
			t.Errorf("after a failed UpdatePace the pace is %+v, want zero", *p)
		}
		return nil
	}); err != nil {
		t.Fatalf("UpdatePace: %v", err)
	}
}

func testPaceConcurrent(t *testing.T, s ciba.Store) {
	r := NewRequest()
	mustCreate(t, s, r)
	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() {
			if _, err := s.UpdatePace(context.Background(), r.ID, func(p *ciba.Pace) error {
				p.Interval += time.Second
				return nil
			}); err != nil {
				t.Errorf("UpdatePace: %v", err)
			}
		})
	}
	wg.Wait()
	p, err := s.UpdatePace(t.Context(), r.ID, func(*ciba.Pace) error { return nil })
	if err != nil || p.Interval != 100*time.Second {
		t.Fatalf("after 100 concurrent increments UpdatePace = %+v, %v; want Interval 100s", p, err)
	}
}

func testPaceApart(t *testing.T, s ciba.Store) {
	r := NewRequest()
	mustCreate(t, s, r)
	if _, err := s.UpdatePace(t.Context(), r.ID, func(p *ciba.Pace) error {
		p.Interval = time.Hour
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	wantSame(t, "GetRequest after UpdatePace", mustGet(t, s, r.ID), r)
	if _, err := s.UpdateRequest(t.Context(), r.ID, func(cur *ciba.AuthRequest) error {
		cur.Interval = 7 * time.Second
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	p, err := s.UpdatePace(t.Context(), r.ID, func(*ciba.Pace) error { return nil })
	if err != nil || p.Interval != time.Hour {
		t.Fatalf("UpdatePace after UpdateRequest = %+v, %v; want Interval 1h", p, err)
	}
}

func testSubscribeUpdate(t *testing.T, s ciba.Store) {
	r := NewRequest()
	mustCreate(t, s, r)
	ch, cancel := s.Subscribe(r.ID)
	defer cancel()
	noWake(t, ch, "before any change")
	if _, err := s.UpdateRequest(t.Context(), r.ID, func(cur *ciba.AuthRequest) error {
		return cur.Deny(time.Now(), "no")
	}); err != nil {
		t.Fatal(err)
	}
	waitWake(t, ch, "after UpdateRequest")
	if got := mustGet(t, s, r.ID); got.Status != ciba.StatusDenied {
		t.Fatalf("after the wake-up the request is %s, want denied", got.Status)
	}
}

func testSubscribeDelete(t *testing.T, s ciba.Store) {
	r := NewRequest()
	mustCreate(t, s, r)
	ch, cancel := s.Subscribe(r.ID)
	defer cancel()
	if err := s.DeleteRequest(t.Context(), r.ID); err != nil {
		t.Fatal(err)
	}
	waitWake(t, ch, "after DeleteRequest")
}

func testSubscribeAll(t *testing.T, s ciba.Store) {
	r := NewRequest()
	mustCreate(t, s, r)
	var chans []<-chan struct{}
	for range 3 {
		ch, cancel := s.Subscribe(r.ID)
		defer cancel()
		chans = append(chans, ch)
	}
	if _, err := s.UpdateRequest(t.Context(), r.ID, func(*ciba.AuthRequest) error { return nil }); err != nil {
		t.Fatal(err)
	}
	for i, ch := range chans {
		waitWake(t, ch, fmt.Sprintf("subscriber %d", i))
	}
}

func testSubscribeNoWake(t *testing.T, s ciba.Store) {
	r, other := NewRequest(), NewRequest()
	mustCreate(t, s, r)
	mustCreate(t, s, other)
	ch, cancel := s.Subscribe(r.ID)
	defer cancel()
	otherCh, otherCancel := s.Subscribe(other.ID)
	defer otherCancel()
	if _, err := s.UpdateRequest(t.Context(), r.ID, func(*ciba.AuthRequest) error { return errors.New("refused") }); err == nil {
		t.Fatal("UpdateRequest ignored its updater's error")
	}
	if _, err := s.UpdateRequest(t.Context(), other.ID, func(*ciba.AuthRequest) error { return nil }); err != nil {
		t.Fatal(err)
	}
	// The other request's subscriber fired, so any wake-up of ours by the
	// same update would have been sent by now on a synchronous backend.
	waitWake(t, otherCh, "the other request's subscriber")
	noWake(t, ch, "after a failed update and an update of another request")
}

func testSubscribeCancel(t *testing.T, s ciba.Store) {
	r := NewRequest()
	mustCreate(t, s, r)
	ch, cancel := s.Subscribe(r.ID)
	keep, keepCancel := s.Subscribe(r.ID)
	defer keepCancel()
	cancel()
	cancel()
	if _, err := s.UpdateRequest(t.Context(), r.ID, func(*ciba.AuthRequest) error { return nil }); err != nil {
		t.Fatal(err)
	}
	waitWake(t, keep, "the subscription that was kept")
	noWake(t, ch, "the cancelled subscription")
}

func testSubscribeSlowReader(t *testing.T, s ciba.Store) {
	r := NewRequest()
	r.UserNotice = ciba.Delivery{}
	mustCreate(t, s, r)
	ch, cancel := s.Subscribe(r.ID)
	defer cancel()
	for range 10 {
		if _, err := s.UpdateRequest(t.Context(), r.ID, func(cur *ciba.AuthRequest) error {
			cur.UserNotice.Attempts++
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	waitWake(t, ch, "after 10 unread changes")
	if got := mustGet(t, s, r.ID).UserNotice.Attempts; got != 10 {
		t.Fatalf("Attempts = %d, want 10", got)
	}
}

func testRecord(t *testing.T, s ciba.Store) {
	if err := s.PutRecord(t.Context(), "jti", "a", []byte("one"), time.Hour); err != nil {
		t.Fatalf("PutRecord: %v", err)
	}
	if err := s.PutRecord(t.Context(), "key", "b", []byte("two"), 0); err != nil {
		t.Fatalf("PutRecord: %v", err)
	}
	wantRecord(t, s, "jti", "a", "one")
	wantRecord(t, s, "key", "b", "two")
	wantRecord(t, s, "jti", "a", "one") // Get does not consume
}

func testRecordExists(t *testing.T, s ciba.Store) {
	if err := s.PutRecord(t.Context(), "jti", "a", []byte("one"), time.Hour); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "PutRecord of a present key", s.PutRecord(t.Context(), "jti", "a", []byte("two"), time.Hour), ciba.ErrExists)
	wantErr(t, "PutRecord of a present key without lifetime", s.PutRecord(t.Context(), "jti", "a", []byte("two"), 0), ciba.ErrExists)
	wantRecord(t, s, "jti", "a", "one")
}

func testRecordKinds(t *testing.T, s ciba.Store) {
	for _, kind := range []string{"jti", "refresh"} {
		if err := s.PutRecord(t.Context(), kind, "same", []byte(kind), time.Hour); err != nil {
			t.Fatalf("PutRecord(%s): %v", kind, err)
		}
	}
	// Kinds and keys that would collide if simply concatenated.
	if err := s.PutRecord(t.Context(), "ab", "c", []byte("ab/c"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := s.PutRecord(t.Context(), "a", "bc", []byte("a/bc"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := s.TakeRecord(t.Context(), "jti", "same"); err != nil {
		t.Fatal(err)
	}
	wantRecord(t, s, "refresh", "same", "refresh")
	wantRecord(t, s, "ab", "c", "ab/c")
	wantRecord(t, s, "a", "bc", "a/bc")
}

func testRecordUnknown(t *testing.T, s ciba.Store) {
	if err := s.PutRecord(t.Context(), "jti", "a", []byte("one"), time.Hour); err != nil {
		t.Fatal(err)
	}
	_, err := s.GetRecord(t.Context(), "jti", "b")
	wantErr(t, "GetRecord of an unknown key", err, ciba.ErrNotFound)
	_, err = s.GetRecord(t.Context(), "refresh", "a")
	wantErr(t, "GetRecord of a key of another kind", err, ciba.ErrNotFound)
	_, err = s.TakeRecord(t.Context(), "jti", "b")
	wantErr(t, "TakeRecord of an unknown key", err, ciba.ErrNotFound)
	wantRecord(t, s, "jti", "a", "one")
}

func testTake(t *testing.T, s ciba.Store) {
	if err := s.PutRecord(t.Context(), "refresh", "a", []byte("one"), time.Hour); err != nil {
		t.Fatal(err)
	}
	got, err := s.TakeRecord(t.Context(), "refresh", "a")
	if err != nil || string(got) != "one" {
		t.Fatalf("TakeRecord = %q, %v; want one", got, err)
	}
	_, err = s.GetRecord(t.Context(), "refresh", "a")
	wantErr(t, "GetRecord after TakeRecord", err, ciba.ErrNotFound)
	_, err = s.TakeRecord(t.Context(), "refresh", "a")
	wantErr(t, "TakeRecord a second time", err, ciba.ErrNotFound)
	if err := s.PutRecord(t.Context(), "refresh", "a", []byte("two"), time.Hour); err != nil {
		t.Fatalf("PutRecord after TakeRecord: %v", err)
	}
	wantRecord(t, s, "refresh", "a", "two")
}

func testTakeConcurrent(t *testing.T, s ciba.Store) {
	if err := s.PutRecord(t.Context(), "refresh", "a", []byte("one"), time.Hour); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var got, notFound atomic.Int32
	for range 50 {
		wg.Go(func() {
			v, err := s.TakeRecord(context.Background(), "refresh", "a")
			switch {
			case err == nil && string(v) == "one":
				got.Add(1)
			case errors.Is(err, ciba.ErrNotFound):
				notFound.Add(1)
			default:
				t.Errorf("TakeRecord = %q, %v", v, err)
			}
		})
	}
	wg.Wait()
	if got.Load() != 1 || notFound.Load() != 49 {
		t.Fatalf("%d takers got the record and %d got ErrNotFound, want 1 and 49", got.Load(), notFound.Load())
	}
}

func testPutConcurrent(t *testing.T, s ciba.Store) {
	var wg sync.WaitGroup
	var ok, exists atomic.Int32
	var winner atomic.Value
	for i := range 50 {
		wg.Go(func() {
			v := fmt.Sprint(i)
			err := s.PutRecord(context.Background(), "jti", "a", []byte(v), time.Hour)
			switch {
			case err == nil:
				ok.Add(1)
				winner.Store(v)
			case errors.Is(err, ciba.ErrExists):
				exists.Add(1)
			default:
				t.Errorf("PutRecord: %v", err)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 1 || exists.Load() != 49 {
		t.Fatalf("%d writers succeeded and %d got ErrExists, want 1 and 49", ok.Load(), exists.Load())
	}
	wantRecord(t, s, "jti", "a", winner.Load().(string))
}

func testRecordExpiry(t *testing.T, s ciba.Store) {
	ctx := t.Context()
	for _, key := range []string{"get", "take", "put"} {
		if err := s.PutRecord(ctx, "jti", key, []byte("old"), 30*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutRecord(ctx, "jti", "forever", []byte("kept"), 0); err != nil {
		t.Fatal(err)
	}
	if err := s.PutRecord(ctx, "jti", "hour", []byte("kept"), time.Hour); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	_, err := s.GetRecord(ctx, "jti", "get")
	wantErr(t, "GetRecord of an expired record", err, ciba.ErrNotFound)
	_, err = s.TakeRecord(ctx, "jti", "take")
	wantErr(t, "TakeRecord of an expired record", err, ciba.ErrNotFound)
	if err := s.PutRecord(ctx, "jti", "put", []byte("new"), time.Hour); err != nil {
		t.Fatalf("PutRecord over an expired record: %v", err)
	}
	wantRecord(t, s, "jti", "put", "new")
	wantRecord(t, s, "jti", "forever", "kept")
	wantRecord(t, s, "jti", "hour", "kept")
}

func testRecordCopies(t *testing.T, s ciba.Store) {
	v := []byte("value")
	if err := s.PutRecord(t.Context(), "key", "a", v, 0); err != nil {
		t.Fatal(err)
	}
	v[0] = 'X'
	got, err := s.GetRecord(t.Context(), "key", "a")
	if err != nil {
		t.Fatal(err)
	}
	got[0] = 'Y'
	wantRecord(t, s, "key", "a", "value")
}

func testRecordEmpty(t *testing.T, s ciba.Store) {
	if err := s.PutRecord(t.Context(), "jti", "a", nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetRecord(t.Context(), "jti", "a")
	if err != nil || len(got) != 0 {
		t.Fatalf("GetRecord = %q, %v; want an empty value", got, err)
	}
	wantErr(t, "PutRecord over an empty record", s.PutRecord(t.Context(), "jti", "a", nil, time.Hour), ciba.ErrExists)
}

// testRevocationMarks is the pattern token revocation (package local)
// relies on: a mark with an empty value and a lifetime of a day or more,
// written by concurrent revokers of which exactly one creates it and the
// others find it (ErrExists, no error to them), and marks of other kinds
// under the same key kept apart (a token's family and its own revocation
// share its jti).
func testRevocationMarks(t *testing.T, s ciba.Store) {
	ctx := t.Context()
	const revokers = 20
	var created atomic.Int32
	var wg sync.WaitGroup
	for range revokers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch err := s.PutRecord(ctx, "refresh_revoked", "fam", nil, 24*time.Hour+5*time.Minute); {
			case err == nil:
				created.Add(1)
			case !errors.Is(err, ciba.ErrExists):
				t.Errorf("PutRecord of a revocation mark: %v", err)
			}
		}()
	}
	wg.Wait()
	if n := created.Load(); n != 1 {
		t.Fatalf("%d of %d concurrent revokers created the mark, want exactly 1", n, revokers)
	}
	if v, err := s.GetRecord(ctx, "refresh_revoked", "fam"); err != nil || len(v) != 0 {
		t.Fatalf("GetRecord of the mark = %q, %v; want an empty value", v, err)
	}
	if err := s.PutRecord(ctx, "access_family", "jti-1", []byte("fam"), 15*time.Minute); err != nil {
		t.Fatal(err)
	}
	_, err := s.GetRecord(ctx, "access_revoked", "jti-1")
	wantErr(t, "the revocation of a token that only has a family", err, ciba.ErrNotFound)
	wantRecord(t, s, "access_family", "jti-1", "fam")
}

func testCancelledContext(t *testing.T, s ciba.Store) {
	r := NewRequest()
	mustCreate(t, s, r)
	if err := s.PutRecord(t.Context(), "jti", "a", []byte("one"), time.Hour); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	fresh := NewRequest()
	if err := s.CreateRequest(ctx, fresh); err == nil {
		t.Error("CreateRequest succeeded with a cancelled context")
	}
	if _, err := s.UpdateRequest(ctx, r.ID, func(cur *ciba.AuthRequest) error {
		cur.Status = ciba.StatusDenied
		return nil
	}); err == nil {
		t.Error("UpdateRequest succeeded with a cancelled context")
	}
	if err := s.DeleteRequest(ctx, r.ID); err == nil {
		t.Error("DeleteRequest succeeded with a cancelled context")
	}
	if err := s.PutRecord(ctx, "jti", "b", []byte("two"), time.Hour); err == nil {
		t.Error("PutRecord succeeded with a cancelled context")
	}
	if _, err := s.TakeRecord(ctx, "jti", "a"); err == nil {
		t.Error("TakeRecord succeeded with a cancelled context")
	}
	_, err := s.GetRequest(t.Context(), fresh.ID)
	wantErr(t, "GetRequest of the refused request", err, ciba.ErrNotFound)
	wantSame(t, "GetRequest", mustGet(t, s, r.ID), r)
	wantRecord(t, s, "jti", "a", "one")
	_, err = s.GetRecord(t.Context(), "jti", "b")
	wantErr(t, "GetRecord of the refused record", err, ciba.ErrNotFound)
}

func testClosed(t *testing.T, s ciba.Store) {
	ctx := t.Context()
	r := NewRequest()
	mustCreate(t, s, r)
	if err := s.PutRecord(ctx, "jti", "a", []byte("one"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	calls := map[string]func() error{
		"CreateRequest": func() error { return s.CreateRequest(ctx, NewRequest()) },
		"GetRequest": func() error {
			_, err := s.GetRequest(ctx, r.ID)
			return err
		},
		"GetRequestByApprovalID": func() error {
			_, err := s.GetRequestByApprovalID(ctx, r.ApprovalID)
			return err
		},
		"UpdateRequest": func() error {
			_, err := s.UpdateRequest(ctx, r.ID, func(*ciba.AuthRequest) error { return nil })
			return err
		},
		"DeleteRequest": func() error { return s.DeleteRequest(ctx, r.ID) },
		"ListRequests": func() error {
			return s.ListRequests(ctx, func(*ciba.AuthRequest) bool { return true })
		},
		"UpdatePace": func() error {
			_, err := s.UpdatePace(ctx, r.ID, func(*ciba.Pace) error { return nil })
			return err
		},
		"Poll": func() error {
			_, err := s.Poll(ctx, r.ID, ownQuery(r, ciba.PaceRule{Now: time.Now()}))
			return err
		},
		"ListSweep": func() error {
			return s.ListSweep(ctx, func(*ciba.SweepView) bool { return true })
		},
		"PutRecord": func() error { return s.PutRecord(ctx, "jti", "b", nil, time.Hour) },
		"GetRecord": func() error {
			_, err := s.GetRecord(ctx, "jti", "a")
			return err
		},
		"TakeRecord": func() error {
			_, err := s.TakeRecord(ctx, "jti", "a")
			return err
		},
	}
	names := make([]string, 0, len(calls))
	for name := range calls {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if err := calls[name](); !errors.Is(err, ciba.ErrUnavailable) {
			t.Errorf("%s after Close: got %v, want an error wrapping ErrUnavailable", name, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Errorf("a second Close: %v", err)
	}
}

// testDPoPJKT: a request bound to a DPoP key (RFC 9449 §10) stays bound
// through every change, and the poll with a proof of that key that finds
// it decided returns it with its key.
func testDPoPJKT(t *testing.T, s ciba.Store) {
	const jkt = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
	r := NewRequest()
	r.DPoPJKT = jkt
	mustCreate(t, s, r)
	if got := mustGet(t, s, r.ID).DPoPJKT; got != jkt {
		t.Fatalf("GetRequest: DPoPJKT = %q, want %q", got, jkt)
	}
	now := time.Now().UTC().Round(0)
	got, err := s.UpdateRequest(t.Context(), r.ID, func(cur *ciba.AuthRequest) error {
		return cur.Approve(now, now, []byte("sealed"))
	})
	if err != nil {
		t.Fatalf("UpdateRequest: %v", err)
	}
	if got.DPoPJKT != jkt {
		t.Fatalf("UpdateRequest result: DPoPJKT = %q, want %q", got.DPoPJKT, jkt)
	}
	res, err := s.Poll(t.Context(), r.ID, ciba.PollQuery{ClientID: r.ClientID, Kind: r.Kind, Cert: r.CertThumbprint, JKT: jkt, Rule: ciba.PaceRule{Now: now}, Current: true})
	if err != nil {
		t.Fatalf("Poll: %v", err)
	}
	if res.Outcome != ciba.PollDone || res.Request == nil || res.Request.DPoPJKT != jkt {
		t.Fatalf("Poll of the approved request: outcome %v, request %+v; want PollDone with DPoPJKT %q", res.Outcome, res.Request, jkt)
	}
}

// testApprovedDetails: the digest of the authorization_details the user
// approved (AuthRequest.ApprovedDetails) is written in the compare-and-set
// that records the decision, and it and the details themselves come back
// byte for byte from every read: get, list and the poll that finds the
// request decided.
func testApprovedDetails(t *testing.T, s ciba.Store) {
	r := NewRequest()
	if r.AuthzDetails == "" {
		t.Fatal("NewRequest has no authorization_details")
	}
	mustCreate(t, s, r)
	if got := mustGet(t, s, r.ID); got.AuthzDetails != r.AuthzDetails || got.ApprovedDetails != "" {
		t.Fatalf("GetRequest of the pending request: details %q, approved %q; want %q and none", got.AuthzDetails, got.ApprovedDetails, r.AuthzDetails)
	}
	digest := r.DetailsDigest()
	now := time.Now().UTC().Round(0)
	got, err := s.UpdateRequest(t.Context(), r.ID, func(cur *ciba.AuthRequest) error {
		if err := cur.Approve(now, now, []byte("sealed")); err != nil {
			return err
		}
		cur.ApprovedDetails = cur.DetailsDigest()
		return nil
	})
	if err != nil {
		t.Fatalf("UpdateRequest: %v", err)
	}
	if got.ApprovedDetails != digest || got.AuthzDetails != r.AuthzDetails {
		t.Fatalf("UpdateRequest result: approved %q, details %q; want %q, %q", got.ApprovedDetails, got.AuthzDetails, digest, r.AuthzDetails)
	}
	if got := mustGet(t, s, r.ID); got.ApprovedDetails != digest || got.DetailsDigest() != digest {
		t.Fatalf("GetRequest: approved %q, details digest %q; want %q", got.ApprovedDetails, got.DetailsDigest(), digest)
	}
	seen := false
	if err := s.ListRequests(t.Context(), func(l *ciba.AuthRequest) bool {
		if l.ID == r.ID {
			seen = l.ApprovedDetails == digest && l.AuthzDetails == r.AuthzDetails
		}
		return true
	}); err != nil {
		t.Fatalf("ListRequests: %v", err)
	}
	if !seen {
		t.Fatal("ListRequests did not give the request with its details and approved digest")
	}
	res, err := s.Poll(t.Context(), r.ID, ciba.PollQuery{ClientID: r.ClientID, Kind: r.Kind, Cert: r.CertThumbprint, Rule: ciba.PaceRule{Now: now}, Current: true})
	if err != nil {
		t.Fatalf("Poll: %v", err)
	}
	if res.Outcome != ciba.PollDone || res.Request == nil || res.Request.ApprovedDetails != digest || res.Request.AuthzDetails != r.AuthzDetails {
		t.Fatalf("Poll of the approved request: outcome %v, request %+v; want PollDone with approved digest %q", res.Outcome, res.Request, digest)
	}
}

// testDeviceDetails: a device grant request (RFC 8628) carries
// authorization_details (RFC 9396 §3), resource indicators and, for a
// delegate, its actor from the device authorization request, and names its
// user only when approved: the approving compare-and-set sets the subject
// and the approved digest together. Every read gives all of it back
// exactly.
func testDeviceDetails(t *testing.T, s ciba.Store) {
	r := NewRequest()
	r.Kind, r.Subject, r.LoginHint, r.BindingMessage, r.UserCodeHash, r.NotificationToken = ciba.KindDevice, "", "", "", "", ""
	r.Relay = ciba.RelayState{}
	r.AuthzDetails = `[{"creditorName":"ACME","instructedAmount":{"amount":"50.00","currency":"EUR"},"type":"payment_initiation"},` +
		`{"actions":["read_balances"],"locations":["https://bank.example/accounts"],"type":"account_information"}]`
	r.Resources = []string{"https://api.example/", "my-api"}
	r.Actor, r.PublicClient = "client-1", true
	mustCreate(t, s, r)
	if got := mustGet(t, s, r.ID); !SameRequest(got, r) {
		t.Fatalf("GetRequest of the pending device request:\n got %+v\nwant %+v", got, r)
	}
	digest := r.DetailsDigest()
	now := time.Now().UTC().Round(0)
	want := r.Clone()
	got, err := s.UpdateRequest(t.Context(), r.ID, func(cur *ciba.AuthRequest) error {
		if err := cur.Approve(now, now, []byte("sealed")); err != nil {
			return err
		}
		cur.Subject, cur.LoginHint = "alice", "alice"
		cur.ApprovedDetails = cur.DetailsDigest()
		*want = *cur.Clone()
		return nil
	})
	if err != nil {
		t.Fatalf("UpdateRequest: %v", err)
	}
	if got.ApprovedDetails != digest || !SameRequest(got, want) {
		t.Fatalf("UpdateRequest result:\n got %+v\nwant %+v", got, want)
	}
	if got := mustGet(t, s, r.ID); !SameRequest(got, want) || got.DetailsDigest() != digest {
		t.Fatalf("GetRequest of the approved device request:\n got %+v\nwant %+v", got, want)
	}
	seen := false
	if err := s.ListRequests(t.Context(), func(l *ciba.AuthRequest) bool {
		if l.ID == r.ID {
			seen = SameRequest(l, want)
		}
		return true
	}); err != nil {
		t.Fatalf("ListRequests: %v", err)
	}
	if !seen {
		t.Fatal("ListRequests did not give the device request as approved")
	}
	res, err := s.Poll(t.Context(), r.ID, ciba.PollQuery{ClientID: r.ClientID, Kind: ciba.KindDevice, Cert: r.CertThumbprint, Rule: ciba.PaceRule{Now: now}, Current: true})
	if err != nil {
		t.Fatalf("Poll: %v", err)
	}
	if res.Outcome != ciba.PollDone || res.Request == nil || res.Request.ApprovedDetails != digest || res.Request.AuthzDetails != r.AuthzDetails ||
		strings.Join(res.Request.Resources, " ") != "https://api.example/ my-api" || res.Request.Actor != r.Actor {
		t.Fatalf("Poll of the approved device request: outcome %v, request %+v", res.Outcome, res.Request)
	}
}

// testSubscribeFunc: a store that offers function subscriptions
// (ciba.FuncSubscriber, which parked long polls use) calls the function
// after an UpdateRequest of the request, and not after it is stopped.
func testSubscribeFunc(t *testing.T, s ciba.Store) {
	fs, ok := s.(ciba.FuncSubscriber)
	if !ok {
		t.Skip("the store offers no function subscriptions")
	}
	r := NewRequest()
	mustCreate(t, s, r)
	woken := make(chan struct{}, 16)
	stop := fs.SubscribeFunc(r.ID, func() {
		select {
		case woken <- struct{}{}:
		default:
		}
	})
	if _, err := s.UpdateRequest(t.Context(), r.ID, func(cur *ciba.AuthRequest) error {
		cur.Interval = 9 * time.Second
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	waitWake(t, woken, "after UpdateRequest")
	stop()
	stop()
	for len(woken) > 0 {
		<-woken
	}
	if _, err := s.UpdateRequest(t.Context(), r.ID, func(cur *ciba.AuthRequest) error {
		return cur.Deny(time.Now(), "no")
	}); err != nil {
		t.Fatal(err)
	}
	noWake(t, woken, "after stop")
}
