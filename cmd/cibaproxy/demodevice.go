package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/cibaproxy/cibaproxy/internal/channel/webhook"
	"github.com/cibaproxy/cibaproxy/internal/outbound"
)

// cmdDemoDevice runs a stand-in for the two outside parties of the quick
// start: the authentication-device service behind the webhook channel
// (POST /webhook), and the notification endpoint of the demo ping and push
// clients (POST /notify). It prints what it receives and how to answer; with
// --auto it approves or denies by itself. It is for trying cibaproxy out,
// not for production.
func cmdDemoDevice(ctx context.Context, args []string, c cmdIO) error {
	stdout := c.stdout
	var listen, auto string
	if err := c.flags("demo-device", args, func(fs *flag.FlagSet) {
		fs.StringVar(&listen, "listen", "127.0.0.1:9090", "`host:port` to listen on")
		fs.StringVar(&auto, "auto", "", `answer every request by itself: "approve" or "deny" (default: print the curl commands)`)
	}); err != nil {
		return err
	}
	if auto != "" && auto != "approve" && auto != "deny" {
		return usageError{fmt.Errorf(`--auto must be "approve" or "deny", got %q`, auto), "demo-device"}
	}
	var mu sync.Mutex
	say := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(stdout, format, args...)
	}
	client := outbound.New(10 * time.Second)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /webhook", func(w http.ResponseWriter, r *http.Request) {
		var m webhook.Message
		if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&m); err != nil {
			http.Error(w, "bad JSON", http.StatusBadRequest)
			return
		}
		token := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		w.WriteHeader(http.StatusNoContent)
		binding := "no binding message"
		if m.BindingMessage != "" {
			binding = fmt.Sprintf("binding message %q", m.BindingMessage)
		}
		say("\n[device] %s asks %s to approve (scope %q, %s, expires %s)\n",
			m.ClientName, m.LoginHint, m.Scope, binding, m.ExpiresAt.Local().Format(time.TimeOnly))
		if m.ActsForUser || len(m.AuthorizationDetails) > 0 {
			// What a real device must show before the user approves: the
			// delegate wording and every authorization_details member.
			say("[device] it shows the user:\n%s", indentText(m.Text, "    "))
		}
		if auto != "" {
			go func() {
				time.Sleep(time.Second)
				body := fmt.Sprintf(`{"status":%q}`, map[string]string{"approve": "approved", "deny": "denied"}[auto])
				err := client.PostJSON(context.WithoutCancel(ctx), m.CallbackURL, token, []byte(body))
				say("[device] answered %s: %v\n", auto, errOrOK(err))
			}()
			return
		}
		say("[device] to approve:\n  curl -s -X POST %s -H 'Authorization: Bearer %s' -H 'Content-Type: application/json' -d '{\"status\":\"approved\"}'\n", m.CallbackURL, token)
		say("[device] to deny: the same with {\"status\":\"denied\"}\n")
		if m.ApproveURL != "" {
			say("[device] or open the approval page in a browser: %s\n", m.ApproveURL)
		}
	})
	mux.HandleFunc("POST /notify", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 64<<10))
		w.WriteHeader(http.StatusNoContent)
		var m map[string]any
		_ = json.Unmarshal(body, &m)
		switch {
		case m["access_token"] != nil:
			say("\n[client] push: tokens for auth_req_id %v arrived%s\n", m["auth_req_id"], describeTokens(m))
		case m["error"] != nil:
			say("\n[client] push: %v for auth_req_id %v\n", m["error"], m["auth_req_id"])
		default:
			say("\n[client] ping for auth_req_id %v: now POST /token with it\n", m["auth_req_id"])
		}
	})
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", listen, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(slog.DiscardHandler, 0)}
	say("demo device listening on http://%s (webhook: /webhook, client notifications: /notify)\n", ln.Addr())
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// indentText prefixes every line of text with prefix and ends it with a
// newline.
func indentText(text, prefix string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		b.WriteString(prefix + l + "\n")
	}
	return b.String()
}

// tokenAlgs are the algorithms the demo device decodes tokens of.
var tokenAlgs = []jose.SignatureAlgorithm{jose.RS256, jose.PS256, jose.ES256, jose.EdDSA}

// describeTokens describes a pushed token response m for the demo: its
// plain fields, and the claims of its ID token and of a JWT access token,
// decoded but not verified. No token is printed: the refresh token and an
// opaque access token are only said to be there.
func describeTokens(m map[string]any) string {
	var b strings.Builder
	if v, ok := m["token_type"].(string); ok {
		fmt.Fprintf(&b, ": token_type %s", v)
	}
	if v, ok := m["expires_in"].(float64); ok {
		fmt.Fprintf(&b, ", expires_in %.0fs", v)
	}
	if v, ok := m["scope"].(string); ok {
		fmt.Fprintf(&b, ", scope %q", v)
	}
	if m["refresh_token"] != nil {
		b.WriteString(", a refresh_token (not shown)")
	}
	for _, name := range []string{"id_token", "access_token"} {
		raw, _ := m[name].(string)
		if raw == "" {
			continue
		}
		claims, err := unverifiedClaims(raw)
		if err != nil {
			fmt.Fprintf(&b, "\n[client]   %s: not a JWT (%d characters, not shown)", name, len(raw))
			continue
		}
		fmt.Fprintf(&b, "\n[client]   %s claims (decoded, signature not checked here):\n    %s", name, claims)
	}
	return b.String()
}

// unverifiedClaims returns the claims of the JWT raw as indented JSON,
// without checking its signature: the demo client only shows them.
func unverifiedClaims(raw string) (string, error) {
	tok, err := jwt.ParseSigned(raw, tokenAlgs)
	if err != nil {
		return "", err
	}
	var claims map[string]any
	if err := tok.UnsafeClaimsWithoutVerification(&claims); err != nil {
		return "", err
	}
	out, err := json.MarshalIndent(claims, "    ", "  ")
	if err != nil {
		return "", err
	}
	return string(out), nil
}

func errOrOK(err error) string {
	if err != nil {
		return err.Error()
	}
	return "ok"
}
