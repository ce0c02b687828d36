package abuse

// DPoP (RFC 9449) as an attacker meets it, on the built binary with the
// shipped configurations unchanged: one proof replayed in a parallel burst
// at one instance and across two instances on one Redis, and a request
// bound to a key polled from another instance with another key.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// dpopProof is a DPoP proof of key for POST htu, with a fresh jti.
func dpopProof(t *testing.T, key *ecdsa.PrivateKey, htu string) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{EmbedJWK: true}).WithType("dpop+jwt"))
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(map[string]any{"jti": rand.Text(), "htm": "POST", "htu": htu, "iat": time.Now().Unix()})
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

func dpopKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// dpopPost POSTs form to endpoint as demoPoll with the DPoP header proof.
func dpopPost(t *testing.T, endpoint string, form url.Values, proof string) *testutil.Response {
	t.Helper()
	h := http.Header{"DPoP": {proof}}
	req := url.Values{}
	for k, v := range form {
		req[k] = v
	}
	h.Set("Authorization", basic(demoPoll))
	r, err := testutil.PostRaw(ctx(t), endpoint, "application/x-www-form-urlencoded", req.Encode(), h)
	if err != nil {
		t.Fatalf("POST %s: %v", endpoint, err)
	}
	return r
}

// basic is the Authorization header of client c (RFC 6749 §2.3.1).
func basic(c testutil.Client) string {
	r, _ := http.NewRequest(http.MethodPost, "http://x", nil)
	r.SetBasicAuth(url.QueryEscape(c.ID), url.QueryEscape(c.Secret))
	return r.Header.Get("Authorization")
}

// dpopBurst sends one proof n times at once, spread over the endpoints in
// turn, as a CIBA poll of an auth_req_id that does not exist: a proof that
// passes is invalid_grant (the unknown id), a replayed one
// invalid_dpop_proof. It returns the count of each error code.
func dpopBurst(t *testing.T, endpoints []string, proof string, n int) map[string]int {
	t.Helper()
	poll := url.Values{"grant_type": {testutil.GrantCIBA}, "auth_req_id": {"no-such-request"}}
	var (
		mu    sync.Mutex
		codes = map[string]int{}
		wg    sync.WaitGroup
		start = make(chan struct{})
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			r := dpopPost(t, endpoints[i%len(endpoints)], poll, proof)
			mu.Lock()
			defer mu.Unlock()
			codes[r.Str("error")]++
		}()
	}
	close(start)
	wg.Wait()
	return codes
}

// TestDPoPProofBurstAcceptedOnce: examples/quickstart.yaml, at its
// defaults. One DPoP proof (one jti) sent 100 times at once to the token
// endpoint passes exactly once (RFC 9449 §11.1): the jti is recorded in
// the store atomically, so no two concurrent requests both see it new.
func TestDPoPProofBurstAcceptedOnce(t *testing.T) {
	t.Parallel()
	e := startQuickstart(t)
	const n = 100
	proof := dpopProof(t, dpopKey(t), e.url("/token"))
	codes := dpopBurst(t, []string{e.url("/token")}, proof, n)
	if codes["invalid_grant"] != 1 || codes["invalid_dpop_proof"] != n-1 {
		t.Fatalf("answers %v, want one invalid_grant (the proof passed once) and %d invalid_dpop_proof", codes, n-1)
	}
}

// TestDPoPProofReplayAcrossInstances: examples/redis.yaml, two instances
// on one Redis, at their defaults. A proof used on A is refused on B, and
// a burst of one proof spread over both passes once: the jti record is in
// Redis, shared by every instance. A request bound to a key at A is not
// redeemed at B with another key, even while pending.
func TestDPoPProofReplayAcrossInstances(t *testing.T) {
	t.Parallel()
	pair := startRedisPair(t)
	a, b := pair[0], pair[1]
	// The issuer is A's URL for both (startRedisPair): proofs name it.
	htu := a.url("/token")
	key := dpopKey(t)
	poll := url.Values{"grant_type": {testutil.GrantCIBA}, "auth_req_id": {"no-such-request"}}

	proof := dpopProof(t, key, htu)
	if r := dpopPost(t, a.url("/token"), poll, proof); r.Str("error") != "invalid_grant" {
		t.Fatalf("first use on A: %s, want invalid_grant (the proof passed)", r)
	}
	if r := dpopPost(t, b.url("/token"), poll, proof); r.Str("error") != "invalid_dpop_proof" || !strings.Contains(r.Str("error_description"), "already used") {
		t.Fatalf("replay on B: %s, want invalid_dpop_proof: already used", r)
	}

	const n = 100
	codes := dpopBurst(t, []string{a.url("/token"), b.url("/token")}, dpopProof(t, key, htu), n)
	if codes["invalid_grant"] != 1 || codes["invalid_dpop_proof"] != n-1 {
		t.Fatalf("burst over A and B: answers %v, want one invalid_grant and %d invalid_dpop_proof", codes, n-1)
	}

	// Bound at A by a proof at bc-authorize; polled at B with another key
	// while pending: invalid_grant at once, not authorization_pending.
	bc := url.Values{"scope": {"openid"}, "login_hint": {"alice"}, "binding_message": {"dpop pair"}}
	r := dpopPost(t, a.url("/bc-authorize"), bc, dpopProof(t, key, strings.TrimSuffix(htu, "/token")+"/bc-authorize"))
	if r.Status != http.StatusOK {
		t.Fatalf("bc-authorize with a proof on A: %s", r)
	}
	bound := url.Values{"grant_type": {testutil.GrantCIBA}, "auth_req_id": {r.Str("auth_req_id")}}
	if r := dpopPost(t, b.url("/token"), bound, dpopProof(t, dpopKey(t), htu)); r.Str("error") != "invalid_grant" {
		t.Fatalf("poll on B with another key: %s, want invalid_grant", r)
	}
	if r := dpopPost(t, b.url("/token"), bound, dpopProof(t, key, htu)); r.Str("error") != "authorization_pending" {
		t.Fatalf("poll on B with the key: %s, want authorization_pending", r)
	}
}
