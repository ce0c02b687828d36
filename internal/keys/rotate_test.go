package keys

import (
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	gojose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

func kids(l *Live) []string {
	var out []string
	for _, k := range l.PublicJWKS().Keys {
		out = append(out, k.KeyID)
	}
	return out
}

// signedKID returns the kid a token signed by l names.
func signedKID(t *testing.T, l *Live) string {
	t.Helper()
	raw, err := l.Sign(map[string]any{"sub": "x"}, "JWT")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.ParseSigned(raw, []gojose.SignatureAlgorithm{gojose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.KeySet().Verify(t.Context(), raw); err != nil {
		t.Fatalf("a token just signed does not verify: %v", err)
	}
	return tok.Headers[0].KeyID
}

func TestRotation(t *testing.T) {
	ctx := t.Context()
	st := newStore()
	clk := &clock{t: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	a, err := Open(ctx, st, "", clk.now, Algs{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(ctx, st, "", clk.now, Algs{}) // a second instance on the same store
	if err != nil {
		t.Fatal(err)
	}
	old := a.KeyID()
	if b.KeyID() != old {
		t.Fatal("two instances on one store sign with different keys")
	}
	p := RotatePolicy{PublishAhead: DefaultPublishAhead, Retain: RetainFor(10*time.Minute, time.Hour)}

	r, err := a.Rotate(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if r.New.KeyID == old || r.Generation != 1 || len(r.Keys) != 2 {
		t.Fatalf("rotation = %+v", r)
	}
	if want := clk.now().Add(p.PublishAhead); !r.New.NotBefore.Equal(want) {
		t.Errorf("new key signs from %v, want %v", r.New.NotBefore, want)
	}

	t.Run("the new key is published before it signs", func(t *testing.T) {
		if got := kids(a); !slices.Contains(got, r.New.KeyID) || !slices.Contains(got, old) {
			t.Errorf("published %v, want both %s and %s", got, old, r.New.KeyID)
		}
		if got := signedKID(t, a); got != old {
			t.Errorf("signs with %s before PublishAhead, want the old %s", got, old)
		}
	})
	t.Run("another instance sees the new key only after its reload", func(t *testing.T) {
		if slices.Contains(kids(b), r.New.KeyID) {
			t.Fatal("published before reload")
		}
		if err := b.Reload(ctx); err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(kids(b), r.New.KeyID) {
			t.Errorf("not published after reload: %v", kids(b))
		}
	})
	t.Run("after PublishAhead the new key signs, the old one stays published", func(t *testing.T) {
		clk.set(r.New.NotBefore)
		for _, l := range []*Live{a, b} {
			if got := signedKID(t, l); got != r.New.KeyID {
				t.Errorf("signs with %s, want the new %s", got, r.New.KeyID)
			}
			if !slices.Contains(kids(l), old) {
				t.Errorf("the old key is no longer published: %v", kids(l))
			}
		}
	})
	t.Run("tokens of the old key verify until they expire, then the key is gone", func(t *testing.T) {
		clk.set(r.New.NotBefore.Add(p.Retain - time.Second))
		if !slices.Contains(kids(a), old) {
			t.Fatal("the old key left before Retain")
		}
		clk.set(r.New.NotBefore.Add(p.Retain))
		if got := kids(a); slices.Contains(got, old) || len(got) != 1 {
			t.Errorf("after Retain published %v, want only %s", got, r.New.KeyID)
		}
	})
	t.Run("a later rotation drops the expired key from the store", func(t *testing.T) {
		r2, err := Rotate(ctx, st, p, clk.now())
		if err != nil {
			t.Fatal(err)
		}
		if r2.Generation != 2 || len(r2.Keys) != 2 || r2.Keys[1].KeyID != r.New.KeyID {
			t.Errorf("second rotation = %+v", r2)
		}
		// A fresh instance reads the newest generation.
		c, err := Open(ctx, st, "", clk.now, Algs{})
		if err != nil {
			t.Fatal(err)
		}
		if got := kids(c); len(got) != 2 || c.KeyID() != r.New.KeyID {
			t.Errorf("fresh instance publishes %v, signs %s", got, c.KeyID())
		}
	})
}

func TestRotateRules(t *testing.T) {
	ctx := t.Context()
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	p := RotatePolicy{PublishAhead: DefaultPublishAhead, Retain: time.Hour}
	t.Run("a new key must be published at least the JWKS max-age ahead", func(t *testing.T) {
		st := newStore()
		if _, err := Open(ctx, st, "", nil, Algs{}); err != nil {
			t.Fatal(err)
		}
		if _, err := Rotate(ctx, st, RotatePolicy{PublishAhead: time.Minute, Retain: time.Hour}, now); err == nil {
			t.Error("accepted PublishAhead of 1m")
		}
	})
	t.Run("no key in the store yet", func(t *testing.T) {
		if _, err := Rotate(ctx, newStore(), p, now); err == nil {
			t.Error("rotated an empty store")
		}
	})
	t.Run("two rotations at once: one wins", func(t *testing.T) {
		st := newStore()
		if _, err := Open(ctx, st, "", nil, Algs{}); err != nil {
			t.Fatal(err)
		}
		st.beforePut = func() {
			st.beforePut = nil
			if _, err := Rotate(ctx, st, p, now); err != nil {
				t.Error(err)
			}
		}
		if _, err := Rotate(ctx, st, p, now); !errors.Is(err, ErrRotationRace) {
			t.Errorf("got %v, want ErrRotationRace", err)
		}
	})
	t.Run("keys of a file are not rotated here", func(t *testing.T) {
		l, err := Open(ctx, nil, writeKeyFile(t), nil, Algs{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.Rotate(ctx, p); !errors.Is(err, ErrNotRotatable) {
			t.Errorf("got %v, want ErrNotRotatable", err)
		}
	})
}

// writeKeyFile writes an EC key file and returns its path.
func writeKeyFile(t *testing.T) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "key.pem")
	must(t, os.WriteFile(file, pemOf(t, "EC PRIVATE KEY", ok(x509.MarshalECPrivateKey(ecKey()))), 0o600))
	return file
}
