package seal

import (
	"bytes"
	"crypto/rand"
	"testing"
)

func key(t *testing.T, id string) Key {
	t.Helper()
	k := Key{ID: id, Secret: make([]byte, KeySize)}
	if _, err := rand.Read(k.Secret); err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSealOpen(t *testing.T) {
	old, cur := key(t, "old"), key(t, "new")
	oldRing, err := NewRing(old)
	if err != nil {
		t.Fatal(err)
	}
	sealedOld, err := oldRing.Seal([]byte("tokens"), []byte("req-1"))
	if err != nil {
		t.Fatal(err)
	}
	rotated, err := NewRing(cur, old)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("a value sealed before rotation still opens", func(t *testing.T) {
		got, err := rotated.Open(sealedOld, []byte("req-1"))
		if err != nil || !bytes.Equal(got, []byte("tokens")) {
			t.Fatalf("Open = %q, %v", got, err)
		}
	})
	t.Run("new values are sealed with the first key", func(t *testing.T) {
		s, err := rotated.Seal([]byte("x"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := oldRing.Open(s, nil); err == nil {
			t.Fatal("a ring without the new key opened a value sealed with it")
		}
	})
	t.Run("the plaintext does not appear in the sealed value", func(t *testing.T) {
		if bytes.Contains(sealedOld, []byte("tokens")) {
			t.Fatal("plaintext visible")
		}
	})
	t.Run("other additional data does not open (a value cannot move to another request)", func(t *testing.T) {
		if _, err := rotated.Open(sealedOld, []byte("req-2")); err == nil {
			t.Fatal("opened with the wrong additional data")
		}
	})
	t.Run("a tampered value does not open", func(t *testing.T) {
		bad := bytes.Clone(sealedOld)
		bad[len(bad)-1] ^= 1
		if _, err := rotated.Open(bad, []byte("req-1")); err == nil {
			t.Fatal("tampered value opened")
		}
	})
	t.Run("truncated values are refused, not panicked on", func(t *testing.T) {
		for i := 0; i < len(sealedOld); i++ {
			if _, err := rotated.Open(sealedOld[:i], []byte("req-1")); err == nil {
				t.Fatalf("truncated to %d opened", i)
			}
		}
	})
}

func TestNewRingRejects(t *testing.T) {
	k := key(t, "a")
	for name, keys := range map[string][]Key{
		"no keys":      nil,
		"short key":    {{ID: "a", Secret: make([]byte, 16)}},
		"empty id":     {{ID: "", Secret: k.Secret}},
		"duplicate id": {k, k},
	} {
		if _, err := NewRing(keys...); err == nil {
			t.Errorf("%s: NewRing accepted it", name)
		}
	}
}
