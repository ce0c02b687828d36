package oncetest_test

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/ciba/cibatest"
	"github.com/cibaproxy/cibaproxy/internal/seal"
	"github.com/cibaproxy/cibaproxy/internal/store/memory"
)

// upstream knows alice.
type upstream struct{}

func (upstream) ResolveUser(_ context.Context, _ *ciba.Client, h ciba.Hint) (ciba.User, error) {
	if h.LoginHint == "alice" {
		return ciba.User{Subject: "sub-alice", Display: "alice"}, nil
	}
	return ciba.User{}, ciba.Errorf(ciba.CodeUnknownUserID, "unknown")
}

func (upstream) CheckUserCode(context.Context, ciba.User, string) error {
	return ciba.Errorf(ciba.CodeInvalidUserCode, "wrong")
}

func (upstream) SupportsUserCode() bool { return false }

type minter struct{}

func (minter) Mint(_ context.Context, r *ciba.AuthRequest, _ time.Time) (*ciba.TokenResponse, error) {
	return &ciba.TokenResponse{AccessToken: "at-" + r.ID, TokenType: "Bearer", IDToken: "idt-" + r.Subject}, nil
}

var (
	pingClient = &ciba.Client{ID: "ping", Mode: ciba.ModePing, NotificationEndpoint: "https://ping.example/cb"}
	pushClient = &ciba.Client{ID: "push", Mode: ciba.ModePush, NotificationEndpoint: "https://push.example/cb"}
)

// fixture is one instance: a service on its store.
type fixture struct {
	svc   *ciba.Service
	store ciba.Store
}

// newFixture builds a service on a memory store, the pinging and the
// pushing client registered, the real clock; mod changes its configuration
// and dependencies (d.Store replaces the memory store).
func newFixture(t testing.TB, mod func(*ciba.Config, *ciba.Deps)) *fixture {
	t.Helper()
	key := make([]byte, 32)
	rand.Read(key)
	ring, err := seal.NewRing(seal.Key{ID: "k", Secret: key})
	if err != nil {
		t.Fatal(err)
	}
	clients := map[string]*ciba.Client{pingClient.ID: pingClient, pushClient.ID: pushClient}
	cfg := ciba.Config{
		DefaultExpiry: 5 * time.Minute, MaxExpiry: 10 * time.Minute, Interval: 5 * time.Second,
		PollTolerance: 500 * time.Millisecond, ExpiredGrace: 10 * time.Minute, BindingMessageMax: 20,
	}
	deps := ciba.Deps{
		Store: memory.New(), Upstream: upstream{}, Minter: minter{}, Sealer: ring,
		Clients:     func(id string) (*ciba.Client, bool) { c, ok := clients[id]; return c, ok },
		CallbackKey: key, Now: time.Now,
	}
	if mod != nil {
		mod(&cfg, &deps)
	}
	svc, err := ciba.NewService(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{svc: svc, store: deps.Store}
}

// create starts a request of alice's for client c and returns its id.
func (f *fixture) create(t *testing.T, c *ciba.Client) string {
	t.Helper()
	return cibatest.Create(t, f.svc, c)
}

// approve approves request id, as the user's callback does.
func (f *fixture) approve(t *testing.T, id string) {
	t.Helper()
	cibatest.Approve(t, f.svc, f.store, id)
}

// run starts the dispatcher and stops it at the end of the test.
func (f *fixture) run(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.svc.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}
