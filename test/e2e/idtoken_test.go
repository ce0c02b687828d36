package e2e

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"hash"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// Claim names of CIBA §10.3.1 (push mode ID tokens).
const (
	claimAuthReqID = "urn:openid:params:jwt:claim:auth_req_id"
	claimRTHash    = "urn:openid:params:jwt:claim:rt_hash"
)

var asymmetric = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512,
	jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512,
	jose.EdDSA,
}

// idToken is a verified ID token.
type idToken struct {
	Alg    string
	Claims map[string]any
}

func (tok idToken) str(k string) string {
	s, _ := tok.Claims[k].(string)
	return s
}

// verifyIDToken verifies raw's signature with the server's /jwks (by kid)
// and checks iss, aud, exp and iat (OIDC Core §3.1.3.7).
func (e *env) verifyIDToken(raw, clientID string) idToken {
	e.t.Helper()
	t := e.t
	r, err := testutil.Get(ctx(t), e.url("/jwks"))
	if err != nil {
		t.Fatalf("GET /jwks: %v", err)
	}
	if r.Status != http.StatusOK {
		t.Fatalf("GET /jwks: got %s", r)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(r.Body, &set); err != nil {
		t.Fatalf("/jwks is not a JWK set: %v: %s", err, r.Body)
	}
	for _, k := range set.Keys {
		if !k.IsPublic() {
			t.Errorf("/jwks publishes a private or symmetric key (kid %q)", k.KeyID)
		}
	}
	jws, err := jose.ParseSignedCompact(raw, asymmetric)
	if err != nil {
		t.Fatalf("the ID token is not a compact JWS with an asymmetric alg: %v", err)
	}
	hdr := jws.Signatures[0].Protected
	keys := set.Keys
	if hdr.KeyID != "" {
		keys = set.Key(hdr.KeyID)
		if len(keys) == 0 {
			t.Fatalf("the ID token's kid %q is not in /jwks", hdr.KeyID)
		}
	}
	var payload []byte
	for _, k := range keys {
		if payload, err = jws.Verify(k); err == nil {
			break
		}
	}
	if payload == nil {
		t.Fatalf("the ID token's signature does not verify with /jwks: %v", err)
	}
	tok := idToken{Alg: hdr.Algorithm}
	if err := json.Unmarshal(payload, &tok.Claims); err != nil {
		t.Fatalf("ID token payload is not JSON: %v", err)
	}
	if iss := tok.str("iss"); iss != e.srv.URL {
		t.Errorf("ID token iss = %q, want %q", iss, e.srv.URL)
	}
	switch aud := tok.Claims["aud"].(type) {
	case string:
		if aud != clientID {
			t.Errorf("ID token aud = %q, want %q", aud, clientID)
		}
	case []any:
		found := false
		for _, a := range aud {
			found = found || a == clientID
		}
		if !found {
			t.Errorf("ID token aud = %v, want it to contain %q", aud, clientID)
		}
	default:
		t.Errorf("ID token aud = %v, want %q", tok.Claims["aud"], clientID)
	}
	now := float64(time.Now().Unix())
	if exp, ok := tok.Claims["exp"].(float64); !ok || exp <= now {
		t.Errorf("ID token exp = %v, want a time in the future", tok.Claims["exp"])
	}
	if _, ok := tok.Claims["iat"].(float64); !ok {
		t.Errorf("ID token has no iat")
	}
	return tok
}

// leftHash is the at_hash / rt_hash of value for a JWS alg (OIDC Core
// §3.1.3.6): the left half of the alg's hash, base64url. For EdDSA the
// convention is SHA-512 (Ed25519).
func leftHash(alg, value string) string {
	var h hash.Hash
	switch {
	case strings.HasSuffix(alg, "384"):
		h = sha512.New384()
	case strings.HasSuffix(alg, "512"), alg == "EdDSA":
		h = sha512.New()
	default:
		h = sha256.New()
	}
	h.Write([]byte(value))
	sum := h.Sum(nil)
	return base64.RawURLEncoding.EncodeToString(sum[:len(sum)/2])
}

// checkHashes checks at_hash, and rt_hash when a refresh token is present,
// against the tokens of the same response.
func checkHashes(t *testing.T, tok idToken, accessToken, refreshToken string) {
	t.Helper()
	if got, want := tok.str("at_hash"), leftHash(tok.Alg, accessToken); got != want {
		t.Errorf("ID token at_hash = %q, want %q (alg %s)", got, want, tok.Alg)
	}
	if refreshToken != "" {
		if got, want := tok.str(claimRTHash), leftHash(tok.Alg, refreshToken); got != want {
			t.Errorf("ID token %s = %q, want %q (alg %s)", claimRTHash, got, want, tok.Alg)
		}
	}
}
