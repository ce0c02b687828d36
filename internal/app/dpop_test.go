package app

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/cibaproxy/cibaproxy/internal/config"
)

// TestDPoPSettingsApplied: tokens.dpop_algs is what discovery lists and
// what the verifier accepts, and tokens.dpop_window bounds iat.
func TestDPoPSettingsApplied(t *testing.T) {
	issuer := startInstance(t, func() *config.Config {
		cfg := quickstart(t)
		cfg.Tokens.DPoPAlgs, cfg.Tokens.DPoPWindow = []string{"ES384"}, 10*time.Second
		return cfg
	}, Options{})

	resp, err := http.Get(issuer + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&doc)
	resp.Body.Close()
	if got := doc["dpop_signing_alg_values_supported"]; !slices.Equal(toStrings(got), []string{"ES384"}) {
		t.Fatalf("dpop_signing_alg_values_supported = %v, want [ES384]", got)
	}

	poll := url.Values{"grant_type": {"urn:openid:params:grant-type:ciba"}, "auth_req_id": {"no-such-request"}}
	try := func(alg jose.SignatureAlgorithm, curve elliptic.Curve, iat time.Time) map[string]any {
		t.Helper()
		key, err := ecdsa.GenerateKey(curve, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, (&jose.SignerOptions{EmbedJWK: true}).WithType("dpop+jwt"))
		if err != nil {
			t.Fatal(err)
		}
		payload, _ := json.Marshal(map[string]any{"jti": rand.Text(), "htm": "POST", "htu": issuer + "/token", "iat": iat.Unix()})
		jws, err := s.Sign(payload)
		if err != nil {
			t.Fatal(err)
		}
		proof, _ := jws.CompactSerialize()
		req, _ := http.NewRequest(http.MethodPost, issuer+"/token", strings.NewReader(poll.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("demo-poll", "demo-poll-secret")
		req.Header.Set("DPoP", proof)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return body
	}
	// A proof that passes reaches the grant: the id is unknown.
	if body := try(jose.ES384, elliptic.P384(), time.Now()); body["error"] != "invalid_grant" {
		t.Errorf("an ES384 proof: %v, want it accepted (then invalid_grant for the unknown id)", body)
	}
	if body := try(jose.ES256, elliptic.P256(), time.Now()); body["error"] != "invalid_dpop_proof" {
		t.Errorf("an ES256 proof, not in dpop_algs: %v, want invalid_dpop_proof", body)
	}
	if body := try(jose.ES384, elliptic.P384(), time.Now().Add(-30*time.Second)); body["error"] != "invalid_dpop_proof" {
		t.Errorf("a proof 30 s old with a 10 s window: %v, want invalid_dpop_proof", body)
	}
}

// toStrings returns v, a JSON array of strings, as a []string.
func toStrings(v any) []string {
	a, _ := v.([]any)
	out := make([]string, 0, len(a))
	for _, x := range a {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}
