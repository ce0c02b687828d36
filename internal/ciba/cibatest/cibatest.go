// Package cibatest holds the request helpers that the tests of package
// ciba and of internal/ciba/oncetest share. It imports package ciba alone,
// no store, so a test binary that uses it (ciba's own, built with the
// fuzzing instrumentation too) still needs no go-redis.
package cibatest

import (
	"context"
	"testing"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// Create starts a request of alice's (scope openid, login hint alice, a
// client notification token) for client c on svc, after mods change its
// parameters, and returns its auth_req_id.
func Create(t testing.TB, svc *ciba.Service, c *ciba.Client, mods ...func(*ciba.AuthParams)) string {
	t.Helper()
	p := ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: "alice"}, ClientNotificationToken: "note-token"}
	for _, m := range mods {
		m(&p)
	}
	resp, err := svc.Authorize(context.Background(), c, p)
	if err != nil {
		t.Fatalf("Authorize: %v", err)
	}
	return resp.AuthReqID
}

// Approve approves request id, kept in st, as the user's callback does.
func Approve(t testing.TB, svc *ciba.Service, st ciba.Store, id string) {
	t.Helper()
	r, err := st.GetRequest(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Callback(context.Background(), svc.CallbackToken(r.ApprovalID), true, "", ""); err != nil {
		t.Fatalf("approve: %v", err)
	}
}
