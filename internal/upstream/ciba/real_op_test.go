package cibaup

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	upidp "github.com/cibaproxy/cibaproxy/internal/upstream/idp"
	"github.com/cibaproxy/cibaproxy/test/idp"
)

// ping is one notification the IdP sent (CIBA §10.2).
type ping struct {
	Authorization string
	Body          map[string]any
}

// TestAgainstNodeOIDCProvider relays CIBA requests to a real CIBA identity
// provider (node-oidc-provider, test/idp): poll and ping clients, approval,
// denial, and the IdP's refusals of Start.
func TestAgainstNodeOIDCProvider(t *testing.T) {
	var (
		mu    sync.Mutex
		pings []ping
	)
	notify := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
		_ = json.Unmarshal(b, &body)
		mu.Lock()
		pings = append(pings, ping{Authorization: r.Header.Get("Authorization"), Body: body})
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(notify.Close)

	const (
		basicSecret = "basic-secret-do-not-leak"
		postSecret  = "post-secret-do-not-leak"
		pingSecret  = "ping-secret-do-not-leak"
	)
	p := idp.Start(t, idp.Config{
		Clients: []idp.Client{
			{ID: "relay-basic", Secret: basicSecret, GrantTypes: []string{idp.GrantCIBA}, BackchannelTokenDeliveryMode: "poll"},
			{ID: "relay-post", Secret: postSecret, GrantTypes: []string{idp.GrantCIBA}, BackchannelTokenDeliveryMode: "poll",
				TokenEndpointAuthMethod: upidp.AuthMethodPost},
			{ID: "relay-ping", Secret: pingSecret, GrantTypes: []string{idp.GrantCIBA}, BackchannelTokenDeliveryMode: "ping",
				BackchannelClientNotificationEndpoint: notify.URL + "/upstream/ping"},
		},
		Accounts: []idp.Account{
			{ID: "alice", Email: "alice@example.com", EmailVerified: true},
			{ID: "bob", Email: "bob@example.com", EmailVerified: true},
			{ID: "carol", Email: "carol@example.com", EmailVerified: true, UserCode: "4711"},
		},
		CIBAInterval: 1,
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	u, err := New(ctx, Config{
		Issuer: p.Issuer(),
		Clients: map[string]Credentials{
			"basic": {Credentials: upidp.Credentials{ClientID: "relay-basic", ClientSecret: basicSecret}},
			"post":  {Credentials: upidp.Credentials{ClientID: "relay-post", ClientSecret: postSecret, AuthMethod: upidp.AuthMethodPost}},
			"ping":  {Credentials: upidp.Credentials{ClientID: "relay-ping", ClientSecret: pingSecret}, Ping: true},
			"wrong": {Credentials: upidp.Credentials{ClientID: "relay-basic", ClientSecret: "not-the-secret"}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := u.Ready(ctx); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	if md, err := u.Metadata(ctx); err != nil || md["backchannel_authentication_endpoint"] == nil {
		t.Fatalf("Metadata = %v, %v; want the IdP's CIBA metadata", md, err)
	}
	if u.SupportsPing("basic") || !u.SupportsPing("ping") {
		t.Fatalf("SupportsPing(basic) = %v, SupportsPing(ping) = %v; want false, true", u.SupportsPing("basic"), u.SupportsPing("ping"))
	}

	start := func(t *testing.T, client string, p ciba.AuthParams, token string) ciba.RelayStarted {
		t.Helper()
		s, err := u.Start(ctx, clientOf(client), p, token)
		if err != nil {
			t.Fatalf("Start: %v", err)
		}
		if s.ID == "" || s.ExpiresIn <= 0 || s.Interval != time.Second {
			t.Fatalf("Start = {ExpiresIn:%v Interval:%v}; want an id, a lifetime and the IdP's 1 s interval", s.ExpiresIn, s.Interval)
		}
		return s
	}
	checkTokens := func(t *testing.T, res ciba.RelayResult) {
		t.Helper()
		var tr ciba.TokenResponse
		if err := json.Unmarshal(res.Tokens, &tr); err != nil || tr.AccessToken == "" || tr.IDToken == "" || !strings.EqualFold(tr.TokenType, "bearer") {
			t.Fatalf("Poll = %+v (%v); want the IdP's access and ID tokens", res, err)
		}
	}
	wantCode := func(t *testing.T, err error, code ciba.ErrorCode) {
		t.Helper()
		var pe *ciba.Error
		if !errors.As(err, &pe) || pe.Code != code || !strings.HasPrefix(pe.Description, "the identity provider answered: ") {
			t.Fatalf("error = %v; want the IdP's %s", err, code)
		}
	}

	for _, client := range []string{"basic", "post"} {
		t.Run("a poll client via "+client+": pending, approved, tokens once", func(t *testing.T) {
			s := start(t, client, ciba.AuthParams{Scope: "openid email", Hint: ciba.Hint{LoginHint: "alice@example.com"}, BindingMessage: "Code-1234"}, "")
			if res, err := u.Poll(ctx, clientOf(client), s.ID); err != nil || !res.Pending {
				t.Fatalf("Poll before approval = %+v, %v; want pending", res, err)
			}
			pending, err := p.Pending(ctx)
			if err != nil || len(pending) != 1 || pending[0].BindingMessage != "Code-1234" || pending[0].AccountID != "alice" {
				t.Fatalf("pending at the IdP = %+v, %v; want alice's request with the binding message", pending, err)
			}
			if _, err := p.ApproveCIBA(ctx, s.ID); err != nil {
				t.Fatalf("ApproveCIBA: %v", err)
			}
			res, err := u.Poll(ctx, clientOf(client), s.ID)
			if err != nil {
				t.Fatalf("Poll after approval: %v", err)
			}
			checkTokens(t, res)
			_, err = u.Poll(ctx, clientOf(client), s.ID)
			wantCode(t, err, ciba.CodeInvalidGrant)
			if strings.Contains(err.Error(), s.ID) {
				t.Fatalf("the error quotes the auth_req_id: %v", err)
			}
		})
	}

	t.Run("a denied request is access_denied", func(t *testing.T) {
		s := start(t, "basic", ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: "bob"}}, "")
		if _, err := p.DenyCIBA(ctx, s.ID); err != nil {
			t.Fatalf("DenyCIBA: %v", err)
		}
		_, err := u.Poll(ctx, clientOf("basic"), s.ID)
		wantCode(t, err, ciba.CodeAccessDenied)
	})

	t.Run("the IdP's refusals of the request reach the client", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			params ciba.AuthParams
			code   ciba.ErrorCode
		}{
			{"an unknown user", ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: "nobody@example.com"}}, ciba.CodeUnknownUserID},
			{"a binding message the IdP does not accept", ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: "alice"}, BindingMessage: "Code 1234"}, ciba.CodeInvalidBindingMessage},
			{"a login_hint_token the IdP does not accept", ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHintToken: "eyJhbGciOiJub25lIn0.e30."}}, ciba.CodeInvalidRequest},
			{"a missing user code", ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: "carol"}}, ciba.CodeMissingUserCode},
			{"a wrong user code", ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: "carol"}, UserCode: "1234"}, ciba.CodeInvalidUserCode},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, err := u.Start(ctx, clientOf("basic"), tc.params, "")
				wantCode(t, err, tc.code)
			})
		}
		if _, err := u.Start(ctx, clientOf("basic"), ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: "carol"}, UserCode: "4711"}, ""); err != nil {
			t.Fatalf("Start with carol's user code: %v", err)
		}
	})

	t.Run("wrong credentials at the IdP are cibaproxy's misconfiguration", func(t *testing.T) {
		_, err := u.Start(ctx, clientOf("wrong"), ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: "alice"}}, "")
		var pe *ciba.Error
		if err == nil || errors.As(err, &pe) || errors.Is(err, ciba.ErrUnavailable) {
			t.Fatalf("Start with a wrong secret = %v; want a plain error", err)
		}
		t.Logf("error: %v", err)
		if strings.Contains(err.Error(), "not-the-secret") {
			t.Fatalf("the error quotes the secret: %v", err)
		}
	})

	t.Run("a ping client: the IdP pings once approved, one poll gets the tokens", func(t *testing.T) {
		const token = "upstream-ping-token-0123456789"
		s := start(t, "ping", ciba.AuthParams{Scope: "openid email", Hint: ciba.Hint{LoginHint: "alice"}}, token)
		if err := p.ResetCounts(ctx); err != nil {
			t.Fatal(err)
		}
		res, err := p.ApproveCIBA(ctx, s.ID)
		if err != nil || len(res.PingErrors) != 0 {
			t.Fatalf("ApproveCIBA = %+v, %v; want a delivered ping", res, err)
		}
		mu.Lock()
		got := append([]ping(nil), pings...)
		mu.Unlock()
		if len(got) != 1 || got[0].Authorization != "Bearer "+token || got[0].Body["auth_req_id"] != s.ID {
			t.Fatalf("pings = %+v; want one with the bearer and the auth_req_id", got)
		}
		tokens, err := u.Poll(ctx, clientOf("ping"), s.ID)
		if err != nil {
			t.Fatalf("Poll after the ping: %v", err)
		}
		checkTokens(t, tokens)
		counts, err := p.Counts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n := counts.GrantTypes[idp.GrantCIBA]; n != 1 || len(counts.TokenErrors) != 0 {
			t.Fatalf("the IdP saw %d CIBA token requests and errors %v; want one, none", n, counts.TokenErrors)
		}
	})
}
