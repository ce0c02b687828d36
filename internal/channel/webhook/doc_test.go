package webhook

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/outbound"
)

// documentedMember is one member of the example body in docs/webhook.md.
type documentedMember struct {
	name     string
	optional bool // its comment says "left out when empty"
}

// documentedMessage reads the example body of docs/webhook.md: its members,
// in order, and whether each is marked as left out when empty. The example
// (without its // comments) must be valid JSON.
func documentedMessage(t *testing.T) []documentedMember {
	t.Helper()
	doc, err := os.ReadFile("../../../docs/webhook.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(doc)
	_, after, ok := strings.Cut(text, "## cibaproxy → your service")
	if !ok {
		t.Fatal(`docs/webhook.md has no section "cibaproxy → your service"`)
	}
	_, after, ok = strings.Cut(after, "```json\n")
	if !ok {
		t.Fatal("docs/webhook.md: no json example in the section")
	}
	example, _, _ := strings.Cut(after, "```")
	comment := regexp.MustCompile(`\s+//.*$`)
	member := regexp.MustCompile(`^\s*"([a-z_]+)":`)
	var plain strings.Builder
	var members []documentedMember
	for line := range strings.Lines(example) {
		line = strings.TrimSuffix(line, "\n")
		c := comment.FindString(line)
		plain.WriteString(strings.TrimSuffix(line, c) + "\n")
		if m := member.FindStringSubmatch(line); m != nil {
			members = append(members, documentedMember{name: m[1], optional: strings.Contains(c, "left out when empty")})
		}
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(plain.String()), &v); err != nil {
		t.Fatalf("the example of docs/webhook.md is not JSON without its comments: %v\n%s", err, plain.String())
	}
	if len(v) != len(members) {
		t.Fatalf("read %d members of the example, JSON has %d", len(members), len(v))
	}
	return members
}

// sent returns the members of the body Send posts for r and n.
func sent(t *testing.T, r *ciba.AuthRequest, n ciba.Notice) map[string]any {
	t.Helper()
	var msg map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if err := json.NewDecoder(req.Body).Decode(&msg); err != nil {
			t.Errorf("decode: %v", err)
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	if err := New(srv.URL, outbound.New(time.Second)).Send(context.Background(), r, &ciba.Client{ID: r.ClientID, Name: "Bank"}, n); err != nil {
		t.Fatal(err)
	}
	return msg
}

// TestTheDocumentedMessageIsWhatIsSent compares the example body of
// docs/webhook.md with what the channel posts: the same members when every
// field has a value, and, when the optional ones are empty, exactly the
// members the document marks "left out when empty" are absent.
func TestTheDocumentedMessageIsWhatIsSent(t *testing.T) {
	doc := documentedMessage(t)
	var names []string
	for _, m := range doc {
		names = append(names, m.name)
	}
	full := sent(t, &ciba.AuthRequest{
		ID: "auth-req-id", ApprovalID: "appr-1", ClientID: "c1", Subject: "sub-alice", LoginHint: "alice",
		Scopes: []string{"openid"}, BindingMessage: "Code 1234", ACRValues: []string{"urn:example:mfa"}, ExpiresAt: time.Unix(1_800_000_000, 0),
		Actor: "c1", AuthzDetails: `[{"type":"payment_initiation"}]`,
	}, ciba.Notice{ApproveURL: "https://p/approve/appr-1", CallbackURL: "https://p/ciba/callback", CallbackToken: "cb"})
	var got []string
	for k := range full {
		got = append(got, k)
	}
	slices.Sort(got)
	want := slices.Sorted(slices.Values(names))
	if !slices.Equal(got, want) {
		t.Fatalf("a full message has the members %v; docs/webhook.md shows %v", got, want)
	}

	bare := sent(t, &ciba.AuthRequest{
		ID: "auth-req-id", ApprovalID: "appr-1", ClientID: "c1", LoginHint: "alice",
		Scopes: []string{"openid"}, ExpiresAt: time.Unix(1_800_000_000, 0),
	}, ciba.Notice{CallbackToken: "cb"})
	for _, m := range doc {
		_, present := bare[m.name]
		switch {
		case m.optional && present:
			t.Errorf("%s is sent as %v when empty; docs/webhook.md says it is left out", m.name, bare[m.name])
		case !m.optional && !present:
			t.Errorf("%s is left out when empty; docs/webhook.md does not say so", m.name)
		}
	}
}
