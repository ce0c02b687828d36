package webhook

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/outbound"
)

func TestSend(t *testing.T) {
	var auth string
	var msg map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth = r.Header.Get("Authorization")
		json.NewDecoder(r.Body).Decode(&msg)
		w.WriteHeader(http.StatusCreated) // Keycloak's channel answers 201: any 2xx is success
	}))
	defer srv.Close()
	ch := New(srv.URL, outbound.New(time.Second))
	r := &ciba.AuthRequest{
		ID: "auth-req-id-secret", ApprovalID: "appr-1", ClientID: "c1", Subject: "sub-alice", LoginHint: "alice",
		Scopes: []string{"openid", "email"}, BindingMessage: "Code 1234", ExpiresAt: time.Unix(1_800_000_000, 0),
	}
	err := ch.Send(context.Background(), r, &ciba.Client{ID: "c1", Name: "Bank"}, ciba.Notice{
		ApproveURL: "https://p/approve/appr-1", CallbackURL: "https://p/ciba/callback", CallbackToken: "cb-token",
	})
	if err != nil {
		t.Fatal(err)
	}
	if auth != "Bearer cb-token" {
		t.Errorf("Authorization = %q, want the callback token as bearer", auth)
	}
	want := map[string]any{
		"id": "appr-1", "client_id": "c1", "client_name": "Bank", "login_hint": "alice", "subject": "sub-alice",
		"scope": "openid email", "binding_message": "Code 1234", "approve_url": "https://p/approve/appr-1",
		"callback_url": "https://p/ciba/callback", "expires_at": "2027-01-15T08:00:00Z",
	}
	for k, v := range want {
		if msg[k] != v {
			t.Errorf("message %s = %v, want %v", k, msg[k], v)
		}
	}
	b, _ := json.Marshal(msg)
	if strings.Contains(string(b), "auth-req-id-secret") || strings.Contains(string(b), "cb-token") {
		t.Errorf("the auth_req_id or the callback token is in the body: %s", b)
	}
}
