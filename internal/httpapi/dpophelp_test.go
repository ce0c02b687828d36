package httpapi

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"

	gojose "github.com/go-jose/go-jose/v4"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/clientauth"
	"github.com/cibaproxy/cibaproxy/internal/dpop"
)

// The DPoP helpers of this package's tests (dpop_test.go, dpop_rules_test.go,
// dpop_device_test.go, tokens_test.go): the verifiers their servers run,
// and proofs signed with a test key.

// storeVerifier is the verifier cibaproxy runs: jti records in the store.
func storeVerifier(st ciba.Store) *dpop.Verifier {
	v, err := dpop.NewVerifier(dpop.Config{Replay: clientauth.NewProofReplay(st, "dpop", nil)})
	if err != nil {
		panic(err)
	}
	return v
}

// nonceVerifier is storeVerifier with server nonces (RFC 9449 §8, §9)
// made under nonceKey.
func nonceVerifier(t *testing.T, nonceKey []byte) func(ciba.Store) *dpop.Verifier {
	return func(st ciba.Store) *dpop.Verifier {
		v, err := dpop.NewVerifier(dpop.Config{Replay: clientauth.NewProofReplay(st, "dpop", nil), NonceKey: nonceKey})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// signProof is a JWS of claims signed with ES256 by k, its public key in
// the jwk header and typ in the typ header: a DPoP proof when typ is
// dpop+jwt.
func signProof(t *testing.T, k *ecdsa.PrivateKey, typ string, claims map[string]any) string {
	t.Helper()
	s, err := gojose.NewSigner(gojose.SigningKey{Algorithm: gojose.ES256, Key: k}, (&gojose.SignerOptions{EmbedJWK: true}).WithType(gojose.ContentType(typ)))
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
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

// dpopProof is a DPoP proof of key k for method and htu, fresh (a new jti,
// iat now), with extra claims added or replaced.
func dpopProof(t *testing.T, k *ecdsa.PrivateKey, method, htu string, extra map[string]any) string {
	t.Helper()
	claims := map[string]any{"jti": rand.Text(), "htm": method, "htu": htu, "iat": time.Now().Unix()}
	for name, v := range extra {
		claims[name] = v
	}
	return signProof(t, k, "dpop+jwt", claims)
}

// keyJKT is the JWK thumbprint (RFC 7638) of k's public key, as cnf.jkt
// and dpop_jkt carry it.
func keyJKT(t *testing.T, k *ecdsa.PrivateKey) string {
	t.Helper()
	tp, err := (&gojose.JSONWebKey{Key: k.Public()}).Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(tp)
}
