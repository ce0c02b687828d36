package e2e

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// jwksKIDs returns the kids served at /jwks.
func (e *env) jwksKIDs(t *testing.T) []string {
	t.Helper()
	r, err := testutil.Get(ctx(t), e.url("/jwks"))
	if err != nil || r.Status != http.StatusOK {
		t.Fatalf("GET /jwks: %v %v", r, err)
	}
	var set struct {
		Keys []struct {
			KID string `json:"kid"`
			D   string `json:"d"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(r.Body, &set); err != nil {
		t.Fatal(err)
	}
	var kids []string
	for _, k := range set.Keys {
		if k.D != "" {
			t.Fatal("/jwks serves a private key")
		}
		kids = append(kids, k.KID)
	}
	return kids
}

// `keys rotate` against a running server on the embedded store: the new key
// is published at once, the old key keeps signing until publish-ahead.
func TestKeysRotate(t *testing.T) {
	t.Parallel()
	e := start(t)
	op := operator{e: e}
	before := e.jwksKIDs(t)
	if len(before) != 1 {
		t.Fatalf("jwks before rotation: %v, want one key", before)
	}

	var rot struct {
		New struct {
			KID       string    `json:"kid"`
			NotBefore time.Time `json:"not_before"`
		} `json:"new"`
		Keys []struct {
			KID   string    `json:"kid"`
			Until time.Time `json:"until"`
		} `json:"keys"`
	}
	out := op.mustCLI(t, "keys", "rotate", "--json")
	if err := json.Unmarshal([]byte(out), &rot); err != nil {
		t.Fatalf("keys rotate --json: %v\n%s", err, out)
	}
	if rot.New.KID == "" || rot.New.KID == before[0] || len(rot.Keys) != 2 || rot.Keys[1].KID != before[0] {
		t.Fatalf("rotation: %s", out)
	}
	if d := time.Until(rot.New.NotBefore); d < 5*time.Minute {
		t.Errorf("the new key signs in %v; it must be published longer than the JWKS max-age first", d)
	}
	if rot.Keys[1].Until.Before(rot.New.NotBefore.Add(10 * time.Minute)) {
		t.Errorf("the old key leaves at %v, before its tokens (10m) expire", rot.Keys[1].Until)
	}
	after := e.jwksKIDs(t)
	if !slices.Contains(after, rot.New.KID) || !slices.Contains(after, before[0]) {
		t.Errorf("jwks right after rotation: %v, want %s and %s", after, before[0], rot.New.KID)
	}

	// Tokens are still signed by the old key.
	req := e.mustAuthorize(testutil.DemoPoll, "keys")
	e.answer(req, "approved")
	tok := checkTokens(t, "token after rotation", e.token(testutil.DemoPoll, req.AuthReqID))
	if kid := jwsKID(t, tok.Str("id_token")); kid != before[0] {
		t.Errorf("id_token signed by %s, want the old key %s until the new one is due", kid, before[0])
	}
	if !strings.Contains(e.srv.Logs(), "signing keys rotated") {
		t.Error("the server did not log the rotation")
	}

	if r := op.cli(t, "keys", "rotate", "--publish-ahead", "1m"); r.Code != 2 {
		t.Errorf("keys rotate --publish-ahead 1m: %s, want exit 2", r)
	}
}

// With tokens.signing_key_file the command says the file is the operator's.
func TestKeysRotateKeyFile(t *testing.T) {
	t.Parallel()
	quick, err := os.ReadFile(testutil.QuickstartConfig())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := strings.Replace(string(quick), "\nchannels:", "\ntokens:\n  signing_key_file: key.pem\n\nchannels:", 1)
	path := filepath.Join(dir, "cibaproxy.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	key, err := os.ReadFile(filepath.Join(testutil.RepoRoot(), "examples", "keys", "demo-poll.private.jwk"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "key.pem"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, hook: testutil.NewWebhook(t), notify: testutil.NewNotifier(t)}
	e.srv = testutil.Start(t, testutil.Options{Binary: binary, Config: path, WebhookURL: e.hook.URL, NotifyURL: e.notify.URL})
	r := operator{e: e, config: path}.cli(t, "keys", "rotate")
	if r.Code != 1 || !strings.Contains(r.Stderr, "signing_key_file") {
		t.Errorf("keys rotate with a key file: %s", r)
	}
}

// jwsKID returns the kid of a compact JWS's protected header.
func jwsKID(t *testing.T, raw string) string {
	t.Helper()
	head, _, _ := strings.Cut(raw, ".")
	b, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		t.Fatalf("JWS header: %v", err)
	}
	var h struct {
		KID string `json:"kid"`
	}
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatalf("JWS header: %v", err)
	}
	return h.KID
}
