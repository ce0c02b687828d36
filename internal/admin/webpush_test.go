package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/webpush"
)

// secretPath is in every test endpoint's path: it must never be shown.
const secretPath = "s3cret-capability"

func addSubscriptions(t *testing.T, l *LocalUsers, subject string, n int) []webpush.Subscription {
	t.Helper()
	subs := &webpush.Subscriptions{Records: l.Store}
	var out []webpush.Subscription
	for i := range n {
		s := webpush.Subscription{Endpoint: fmt.Sprintf("https://push%d.example:8443/%s/%d", i, secretPath, i),
			P256DH: []byte("public-key"), Auth: []byte("auth-secret-0123"), Created: time.Date(2026, 12, 7, 8, i, 0, 0, time.UTC)}
		if err := subs.Add(t.Context(), subject, s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

// TestListAndRemoveWebPush: a user's subscriptions are listed by short
// id, push service host and time, never with the endpoint's path or the
// keys; one is removed by its id, the others by remove-all; an unknown
// user or id is not found.
func TestListAndRemoveWebPush(t *testing.T) {
	usersImpls(t, "https://ciba.example.com", func(t *testing.T, l *LocalUsers, u Users) {
		added := addSubscriptions(t, l, "sub-bob", 3)
		list, err := u.ListWebPush(t.Context(), "bob")
		if err != nil || len(list) != 3 {
			t.Fatalf("ListWebPush = %+v, %v", list, err)
		}
		for i, s := range list {
			if s.ID != added[i].ID() || s.Host != fmt.Sprintf("push%d.example:8443", i) || !s.Created.Equal(added[i].Created) {
				t.Fatalf("subscription %d: %+v", i, s)
			}
		}
		var table strings.Builder
		if err := WriteWebPush(&table, list); err != nil {
			t.Fatal(err)
		}
		js, _ := json.Marshal(WebPushJSON(list))
		for _, out := range []string{table.String(), string(js)} {
			if strings.Contains(out, secretPath) || strings.Contains(out, "auth-secret") || !strings.Contains(out, list[0].ID) || !strings.Contains(out, "push0.example:8443") {
				t.Fatalf("the listing shows a secret or lacks the id and host:\n%s", out)
			}
		}
		if got, err := u.ListWebPush(t.Context(), "alice"); err != nil || len(got) != 0 {
			t.Fatalf("a user without subscriptions: %+v, %v", got, err)
		}

		removed, err := u.RemoveWebPush(t.Context(), "bob", list[1].ID[:8])
		if err != nil || removed != list[1] {
			t.Fatalf("RemoveWebPush = %+v, %v; want %+v", removed, err, list[1])
		}
		if _, err := u.RemoveWebPush(t.Context(), "bob", list[1].ID); !errors.Is(err, ErrNoUser) && !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "no subscription") {
			t.Fatalf("removing it again: %v", err)
		}
		if _, err := u.RemoveWebPush(t.Context(), "carol", list[0].ID); err == nil || !strings.Contains(err.Error(), `no user "carol"`) {
			t.Fatalf("an unknown user: %v", err)
		}
		if _, err := u.ListWebPush(t.Context(), "carol"); err == nil || !strings.Contains(err.Error(), `no user "carol"`) {
			t.Fatalf("listing an unknown user: %v", err)
		}
		if n, err := u.RemoveAllWebPush(t.Context(), "bob"); err != nil || n != 2 {
			t.Fatalf("RemoveAllWebPush = %d, %v; want 2", n, err)
		}
		if left, _ := u.ListWebPush(t.Context(), "bob"); len(left) != 0 {
			t.Fatalf("%d subscriptions left after remove-all", len(left))
		}
	})
}
