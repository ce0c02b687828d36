package httpapi

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	gojose "github.com/go-jose/go-jose/v4"
)

// rawProof is a compact JWS with the given protected header and claims,
// signed with HMAC-SHA256 under macKey when header's alg is HS256, and
// with no signature for alg none: the proofs an attacker forges.
func rawProof(t *testing.T, header, claims map[string]any, macKey []byte) string {
	t.Helper()
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	input := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	if header["alg"] == "none" {
		return input + "."
	}
	m := hmac.New(sha256.New, macKey)
	m.Write([]byte(input))
	return input + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// publicJWK is e's public key as a JSON object.
func (e *dpopEnv) publicJWK(t *testing.T) map[string]any {
	t.Helper()
	b, err := gojose.JSONWebKey{Key: e.key.Public()}.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m
}

// signedWithType is e.proof with another typ header.
func (e *dpopEnv) signedWithType(t *testing.T, typ, htu string) string {
	t.Helper()
	return signProof(t, e.key, typ, map[string]any{"jti": "typ-" + typ, "htm": "POST", "htu": htu, "iat": time.Now().Unix()})
}

// TestDPoPRulesOnEveryStore: every DPoP rule of RFC 9449 at the token
// endpoint, one row each, on the memory store and on Redis (the replay
// records and the request's key live in the store).
func TestDPoPRulesOnEveryStore(t *testing.T) {
	tokenURL, bcURL := dpopIssuer+PathToken, dpopIssuer+PathBCAuthz
	backends := testStores()
	type row struct {
		name string
		// send makes the request and returns its answer.
		send func(t *testing.T, e *dpopEnv) (int, map[string]any)
		code string
		// desc is a part of the error_description.
		desc string
	}
	refresh := func(t *testing.T, e *dpopEnv, proofs ...string) (int, map[string]any) {
		status, _, body := e.post(t, PathToken, "bound", refreshForm, proofs...)
		return status, body
	}
	now := func() int64 { return time.Now().Unix() }
	rows := []row{
		{"typ must be dpop+jwt (RFC 9449 §4.3 4)", func(t *testing.T, e *dpopEnv) (int, map[string]any) {
			return refresh(t, e, e.signedWithType(t, "JWT", tokenURL))
		}, "invalid_dpop_proof", "typ"},
		{"alg none is refused (§4.3 5)", func(t *testing.T, e *dpopEnv) (int, map[string]any) {
			return refresh(t, e, rawProof(t, map[string]any{"alg": "none", "typ": "dpop+jwt", "jwk": e.publicJWK(t)},
				map[string]any{"jti": "none", "htm": "POST", "htu": tokenURL, "iat": now()}, nil))
		}, "invalid_dpop_proof", "asymmetric"},
		{"alg HS256 is refused (§4.3 5: not a symmetric algorithm)", func(t *testing.T, e *dpopEnv) (int, map[string]any) {
			return refresh(t, e, rawProof(t, map[string]any{"alg": "HS256", "typ": "dpop+jwt", "jwk": e.publicJWK(t)},
				map[string]any{"jti": "hs", "htm": "POST", "htu": tokenURL, "iat": now()}, []byte(strings.Repeat("k", 32))))
		}, "invalid_dpop_proof", "asymmetric"},
		{"htm must be the request's method (§4.3 8)", func(t *testing.T, e *dpopEnv) (int, map[string]any) {
			return refresh(t, e, e.proof(t, tokenURL, map[string]any{"htm": "GET"}))
		}, "invalid_dpop_proof", "htm"},
		{"htu must be the endpoint's URL (§4.3 9)", func(t *testing.T, e *dpopEnv) (int, map[string]any) {
			return refresh(t, e, e.proof(t, "https://elsewhere.example/token", nil))
		}, "invalid_dpop_proof", "htu"},
		{"a stale iat is refused (§4.3 11)", func(t *testing.T, e *dpopEnv) (int, map[string]any) {
			return refresh(t, e, e.proof(t, tokenURL, map[string]any{"iat": now() - 3600}))
		}, "invalid_dpop_proof", "iat"},
		{"an iat in the future is refused (§4.3 11)", func(t *testing.T, e *dpopEnv) (int, map[string]any) {
			return refresh(t, e, e.proof(t, tokenURL, map[string]any{"iat": now() + 3600}))
		}, "invalid_dpop_proof", "iat"},
		{"a replayed jti is refused (§11.1)", func(t *testing.T, e *dpopEnv) (int, map[string]any) {
			p := e.proof(t, tokenURL, nil)
			if status, body := refresh(t, e, p); status != http.StatusOK {
				t.Fatalf("first use: %d %v", status, body)
			}
			return refresh(t, e, p)
		}, "invalid_dpop_proof", "already used"},
		{"a dpop_bound_access_tokens client without a proof is refused (§5.2)", func(t *testing.T, e *dpopEnv) (int, map[string]any) {
			return refresh(t, e)
		}, "invalid_dpop_proof", "dpop_bound_access_tokens"},
		{"a bound request is not redeemed with another key (§10)", func(t *testing.T, e *dpopEnv) (int, map[string]any) {
			id := e.approved(t, "bound", aliceForm, e.proof(t, bcURL, nil)).ID
			thief := e.withKey(t)
			status, _, body := thief.post(t, PathToken, "bound", url.Values{"grant_type": {GrantCIBA}, "auth_req_id": {id}}, thief.proof(t, tokenURL, nil))
			return status, body
		}, "invalid_grant", "another DPoP key"},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			st := b.open(t)
			for _, tt := range rows {
				t.Run(tt.name, func(t *testing.T) {
					e := newDPoPEnvOn(t, st, storeVerifier)
					status, body := tt.send(t, e)
					desc, _ := body["error_description"].(string)
					if status != http.StatusBadRequest || body["error"] != tt.code || !strings.Contains(desc, tt.desc) {
						t.Fatalf("got %d %v, want 400 %s mentioning %q", status, body, tt.code, tt.desc)
					}
				})
			}
			t.Run("nonce round trip: use_dpop_nonce with DPoP-Nonce, then the retry with it passes (§8)", func(t *testing.T) {
				e := newDPoPEnvOn(t, st, nonceVerifier(t, []byte(strings.Repeat("n", 32))))
				status, nonce, body := e.post(t, PathToken, "bound", refreshForm, e.proof(t, tokenURL, nil))
				if status != http.StatusBadRequest || body["error"] != "use_dpop_nonce" || nonce == "" {
					t.Fatalf("without a nonce: %d %q %v", status, nonce, body)
				}
				if status, _, body := e.post(t, PathToken, "bound", refreshForm, e.proof(t, tokenURL, map[string]any{"nonce": nonce})); status != http.StatusOK {
					t.Fatalf("with the nonce: %d %v", status, body)
				}
				if status, _, body := e.post(t, PathToken, "bound", refreshForm, e.proof(t, tokenURL, map[string]any{"nonce": "bm90LWEtbm9uY2U"})); status != http.StatusBadRequest || body["error"] != "use_dpop_nonce" {
					t.Fatalf("with a forged nonce: %d %v", status, body)
				}
			})
		})
	}
}
