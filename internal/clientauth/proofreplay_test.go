package clientauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gojose "github.com/go-jose/go-jose/v4"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/dpop"
	"github.com/cibaproxy/cibaproxy/internal/store/memory"
)

var _ dpop.Replay = ProofReplay{}

// dpopProof signs a DPoP proof for POST url with key.
func dpopProof(t *testing.T, key *ecdsa.PrivateKey, jti, url string, iat time.Time) string {
	t.Helper()
	s, err := gojose.NewSigner(gojose.SigningKey{Algorithm: gojose.ES256, Key: key},
		(&gojose.SignerOptions{EmbedJWK: true}).WithType("dpop+jwt"))
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(map[string]any{"jti": jti, "htm": "POST", "htu": url, "iat": iat.Unix()})
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestProofReplayParallel: N parallel uses of one proof against the memory
// store: exactly one is accepted, the others are replays.
func TestProofReplayParallel(t *testing.T) {
	st := memory.New()
	defer st.Close()
	v, err := dpop.NewVerifier(dpop.Config{Replay: NewProofReplay(st, "dpop", nil)})
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	const url = "https://proxy.example/token"
	raw := dpopProof(t, key, "one", url, time.Now())
	const n = 64
	var accepted, replayed atomic.Int32
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			_, err := v.Verify(context.Background(), raw, dpop.Request{Method: "POST", URL: url})
			switch {
			case err == nil:
				accepted.Add(1)
			case errors.Is(err, dpop.ErrReplay):
				replayed.Add(1)
			default:
				t.Errorf("unexpected error: %v", err)
			}
		})
	}
	wg.Wait()
	if accepted.Load() != 1 || replayed.Load() != n-1 {
		t.Fatalf("accepted %d, replayed %d of %d", accepted.Load(), replayed.Load(), n)
	}
}

// TestProofReplayStoreDown: a store failure is an error that wraps the
// store's, not a replay.
func TestProofReplayStoreDown(t *testing.T) {
	st := &putStore{now: time.Now(), records: map[string]time.Time{}, err: ciba.ErrUnavailable}
	seen, err := NewProofReplay(st, "dpop", nil).Seen(t.Context(), "k", time.Now().Add(time.Minute))
	if seen || !errors.Is(err, ciba.ErrUnavailable) {
		t.Fatalf("seen %v, err %v; want ErrUnavailable", seen, err)
	}
}
