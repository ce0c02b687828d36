package dpop

import (
	"context"
	"crypto"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	gojose "github.com/go-jose/go-jose/v4"
)

// TestVerify has one row per rule of RFC 9449 §4.3.
func TestVerify(t *testing.T) {
	keys(t)
	with := func(jti string, edit func(map[string]any)) map[string]any {
		c := goodClaims(jti)
		edit(c)
		return c
	}
	tests := []struct {
		name  string
		raw   func(t testing.TB) string
		req   Request
		kind  error  // nil: accepted
		field string // the Error's Field when refused
	}{
		{name: "a well-formed ES256 proof is accepted", raw: proof{claims: goodClaims("a1")}.sign},
		{name: "a PS256 proof is accepted", raw: proof{alg: gojose.PS256, key: rsaKey, claims: goodClaims("a2")}.sign},
		{name: "an RS256 proof is accepted", raw: proof{alg: gojose.RS256, key: rsaKey, claims: goodClaims("a3")}.sign},
		{name: "an EdDSA proof is accepted", raw: proof{alg: gojose.EdDSA, key: edKey, claims: goodClaims("a4")}.sign},
		{name: "typ is compared without regard to case", raw: proof{typ: "DPoP+JWT", claims: goodClaims("a5")}.sign},
		{name: "htu is compared after normalisation", raw: proof{claims: with("a6", func(c map[string]any) { c["htu"] = "HTTPS://Proxy.Example:443/%74oken" })}.sign},
		{name: "htu ignores the query and fragment", raw: proof{claims: with("a7", func(c map[string]any) { c["htu"] = testURL + "?x=1#f" })}.sign},
		{name: "iat within the window in the future is accepted", raw: proof{claims: with("a8", func(c map[string]any) { c["iat"] = testNow.Add(59 * time.Second).Unix() })}.sign},
		{name: "ath matching the access token is accepted", req: Request{AccessToken: "tok"}, raw: proof{claims: with("a9", func(c map[string]any) { c["ath"] = AccessTokenHash("tok") })}.sign},

		{name: "typ MUST be dpop+jwt: another typ is refused", raw: proof{typ: "JWT", claims: goodClaims("b1")}.sign, kind: ErrInvalidProof, field: "typ"},
		{name: "typ MUST be dpop+jwt: a missing typ is refused", raw: proof{typ: "-", claims: goodClaims("b2")}.sign, kind: ErrInvalidProof, field: "typ"},
		{name: "typ MUST be dpop+jwt: a typ that is not a string is refused", raw: proof{typ: 7, claims: goodClaims("b3")}.sign, kind: ErrInvalidProof, field: "typ"},
		{name: "alg MUST NOT be none", raw: func(t testing.TB) string { return unsigned(t, goodClaims("b4")) }, kind: ErrInvalidProof},
		{name: "alg MUST NOT be symmetric: HS256 is refused", raw: proof{alg: gojose.HS256, key: []byte("0123456789abcdef0123456789abcdef"), jwk: gojose.JSONWebKey{Key: ecKeyPublic()}, claims: goodClaims("b5")}.sign, kind: ErrInvalidProof},
		{name: "the jwk MUST NOT contain a private key", raw: proof{jwk: gojose.JSONWebKey{Key: ecKey}, claims: goodClaims("b6")}.sign, kind: ErrInvalidProof},
		{name: "the jwk MUST NOT be a symmetric key", raw: proof{jwk: gojose.JSONWebKey{Key: []byte("0123456789abcdef0123456789abcdef")}, claims: goodClaims("b7")}.sign, kind: ErrInvalidProof},
		{name: "a missing jwk is refused", raw: proof{jwk: "-", claims: goodClaims("b8")}.sign, kind: ErrInvalidProof, field: "jwk"},
		{name: "the signature MUST verify with the jwk: another key's is refused", raw: proof{jwk: gojose.JSONWebKey{Key: ecKey2.Public()}, claims: goodClaims("b9")}.sign, kind: ErrInvalidProof},
		{name: "htm MUST match the method", raw: proof{claims: with("c1", func(c map[string]any) { c["htm"] = "GET" })}.sign, kind: ErrInvalidProof, field: "htm"},
		{name: "htm is case-sensitive", raw: proof{claims: with("c2", func(c map[string]any) { c["htm"] = "post" })}.sign, kind: ErrInvalidProof, field: "htm"},
		{name: "a missing htm is refused", raw: proof{claims: with("c3", func(c map[string]any) { delete(c, "htm") })}.sign, kind: ErrInvalidProof, field: "htm"},
		{name: "htu MUST match the endpoint: another path is refused", raw: proof{claims: with("c4", func(c map[string]any) { c["htu"] = "https://proxy.example/bc-authorize" })}.sign, kind: ErrInvalidProof, field: "htu"},
		{name: "htu MUST match the endpoint: another host is refused", raw: proof{claims: with("c5", func(c map[string]any) { c["htu"] = "https://evil.example/token" })}.sign, kind: ErrInvalidProof, field: "htu"},
		{name: "htu MUST match the endpoint: http is not https", raw: proof{claims: with("c6", func(c map[string]any) { c["htu"] = "http://proxy.example/token" })}.sign, kind: ErrInvalidProof, field: "htu"},
		{name: "a missing htu is refused", raw: proof{claims: with("c7", func(c map[string]any) { delete(c, "htu") })}.sign, kind: ErrInvalidProof, field: "htu"},
		{name: "an htu that is not a string is refused", raw: proof{claims: with("c8", func(c map[string]any) { c["htu"] = 1 })}.sign, kind: ErrInvalidProof},
		{name: "a stale iat is refused", raw: proof{claims: with("d1", func(c map[string]any) { c["iat"] = testNow.Add(-61 * time.Second).Unix() })}.sign, kind: ErrInvalidProof, field: "iat"},
		{name: "an iat in the future is refused", raw: proof{claims: with("d2", func(c map[string]any) { c["iat"] = testNow.Add(61 * time.Second).Unix() })}.sign, kind: ErrInvalidProof, field: "iat"},
		{name: "a missing iat is refused", raw: proof{claims: with("d3", func(c map[string]any) { delete(c, "iat") })}.sign, kind: ErrInvalidProof, field: "iat"},
		{name: "an iat that is a string is refused", raw: proof{claims: with("d4", func(c map[string]any) { c["iat"] = "now" })}.sign, kind: ErrInvalidProof},
		{name: "a missing jti is refused", raw: proof{claims: with("e1", func(c map[string]any) { delete(c, "jti") })}.sign, kind: ErrInvalidProof, field: "jti"},
		{name: "an empty jti is refused", raw: proof{claims: goodClaims("")}.sign, kind: ErrInvalidProof, field: "jti"},
		{name: "an overlong jti is refused", raw: proof{claims: goodClaims(strings.Repeat("j", 257))}.sign, kind: ErrInvalidProof, field: "jti"},
		{name: "ath is required with an access token", req: Request{AccessToken: "tok"}, raw: proof{claims: goodClaims("f1")}.sign, kind: ErrInvalidProof, field: "ath"},
		{name: "ath MUST be the hash of the access token", req: Request{AccessToken: "tok"}, raw: proof{claims: with("f2", func(c map[string]any) { c["ath"] = AccessTokenHash("other") })}.sign, kind: ErrInvalidProof, field: "ath"},
		{name: "a proof over the size limit is refused", raw: func(testing.TB) string { return strings.Repeat("a", MaxProofSize+1) }, kind: ErrInvalidProof},
		{name: "an empty proof is refused", raw: func(testing.TB) string { return "" }, kind: ErrInvalidProof},
		{name: "garbage is refused", raw: func(testing.TB) string { return "a.b.c" }, kind: ErrInvalidProof},
	}
	v := newTestVerifier(t, Config{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := tt.req
			req.Method, req.URL = "POST", testURL
			p, err := v.Verify(context.Background(), tt.raw(t), req)
			if tt.kind == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if p.JKT == "" || p.JTI == "" {
					t.Fatalf("proof %+v lacks jkt or jti", p)
				}
				return
			}
			if !errors.Is(err, tt.kind) {
				t.Fatalf("err = %v, want %v", err, tt.kind)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("err %T is not an *Error", err)
			}
			if tt.field != "" && e.Field != tt.field {
				t.Errorf("field = %q, want %q (%v)", e.Field, tt.field, err)
			}
			if !strings.HasPrefix(e.Description(), "DPoP proof: ") {
				t.Errorf("description %q", e.Description())
			}
		})
	}
}

func ecKeyPublic() any { return ecKey.Public() }

// TestReplay: "the jti has not previously been received" (RFC 9449 §11.1).
func TestReplay(t *testing.T) {
	v := newTestVerifier(t, Config{})
	req := Request{Method: "POST", URL: testURL}
	raw := proof{claims: goodClaims("once")}.sign(t)
	if _, err := v.Verify(context.Background(), raw, req); err != nil {
		t.Fatal(err)
	}
	_, err := v.Verify(context.Background(), raw, req)
	if !errors.Is(err, ErrReplay) || !errors.Is(err, ErrInvalidProof) {
		t.Fatalf("replayed proof: err = %v, want ErrReplay", err)
	}
	// The same jti under another key is another proof.
	keys(t)
	other := proof{alg: gojose.EdDSA, key: edKey, claims: goodClaims("once")}.sign(t)
	if _, err := v.Verify(context.Background(), other, req); err != nil {
		t.Fatalf("same jti, other key: %v", err)
	}
}

// TestReplayRecordOutlivesTheWindow: the record is kept until the proof
// would be refused by its iat anyway.
func TestReplayRecordOutlivesTheWindow(t *testing.T) {
	r := &memReplay{}
	v := newTestVerifier(t, Config{Replay: r})
	c := goodClaims("w")
	c["iat"] = testNow.Add(30 * time.Second).Unix()
	if _, err := v.Verify(context.Background(), proof{claims: c}.sign(t), Request{Method: "POST", URL: testURL}); err != nil {
		t.Fatal(err)
	}
	for _, until := range r.keys {
		if !until.After(testNow.Add(30*time.Second + DefaultWindow)) {
			t.Errorf("record until %v, the proof is accepted until %v", until, testNow.Add(30*time.Second+DefaultWindow))
		}
	}
}

// TestFailedProofKeepsItsJTI: a proof refused for another reason does not
// use up its jti.
func TestFailedProofKeepsItsJTI(t *testing.T) {
	r := &memReplay{}
	v := newTestVerifier(t, Config{Replay: r})
	c := goodClaims("keep")
	c["htm"] = "GET"
	if _, err := v.Verify(context.Background(), proof{claims: c}.sign(t), Request{Method: "POST", URL: testURL}); err == nil {
		t.Fatal("accepted")
	}
	if len(r.keys) != 0 {
		t.Fatalf("a refused proof recorded its jti: %v", r.keys)
	}
}

// TestReplayStoreDown: a proof is refused when the record cannot be made,
// with ErrReplayCheck wrapping the store's error.
func TestReplayStoreDown(t *testing.T) {
	down := errors.New("store down")
	v := newTestVerifier(t, Config{Replay: &memReplay{err: down}})
	_, err := v.Verify(context.Background(), proof{claims: goodClaims("x")}.sign(t), Request{Method: "POST", URL: testURL})
	if !errors.Is(err, ErrReplayCheck) || !errors.Is(err, down) {
		t.Fatalf("err = %v, want ErrReplayCheck wrapping the store's", err)
	}
	if errors.Is(err, ErrInvalidProof) {
		t.Fatal("a store failure is not the client's fault")
	}
}

// TestThumbprint: JKT is the RFC 7638 SHA-256 thumbprint, base64url.
func TestThumbprint(t *testing.T) {
	keys(t)
	v := newTestVerifier(t, Config{})
	p, err := v.Verify(context.Background(), proof{claims: goodClaims("tp")}.sign(t), Request{Method: "POST", URL: testURL})
	if err != nil {
		t.Fatal(err)
	}
	jwk := gojose.JSONWebKey{Key: ecKey.Public()}
	tp, _ := jwk.Thumbprint(crypto.SHA256)
	if want := base64.RawURLEncoding.EncodeToString(tp); p.JKT != want {
		t.Fatalf("jkt = %q, want %q", p.JKT, want)
	}
}

// TestThumbprintRFC7638Example checks the thumbprint of the example key of
// RFC 7638 §3.1.
func TestThumbprintRFC7638Example(t *testing.T) {
	const key = `{"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB","alg":"RS256","kid":"2011-04-29"}`
	var jwk gojose.JSONWebKey
	if err := jwk.UnmarshalJSON([]byte(key)); err != nil {
		t.Fatal(err)
	}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if got := base64.RawURLEncoding.EncodeToString(tp); got != "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs" {
		t.Fatalf("thumbprint %s", got)
	}
}

// TestNonce: with a nonce key, a proof without a nonce is refused with
// use_dpop_nonce and a fresh nonce, and the retry with it is accepted, at
// any instance with the key (RFC 9449 §8).
func TestNonce(t *testing.T) {
	key := []byte(strings.Repeat("k", 32))
	now := testNow
	clock := func() time.Time { return now }
	replay := &memReplay{}
	a := newTestVerifier(t, Config{NonceKey: key, Now: clock, Replay: replay})
	b := newTestVerifier(t, Config{NonceKey: key, Now: clock, Replay: replay})
	other := newTestVerifier(t, Config{NonceKey: []byte(strings.Repeat("o", 32)), Now: clock})
	req := Request{Method: "POST", URL: testURL}

	_, err := a.Verify(context.Background(), proof{claims: goodClaims("n1")}.sign(t), req)
	var e *Error
	if !errors.As(err, &e) || !errors.Is(err, ErrUseNonce) || e.Nonce == "" {
		t.Fatalf("without a nonce: err = %v, want ErrUseNonce with a nonce", err)
	}
	if errors.Is(err, ErrInvalidProof) {
		t.Fatal("use_dpop_nonce is not invalid_dpop_proof")
	}
	c := goodClaims("n2")
	c["nonce"] = e.Nonce
	if _, err := b.Verify(context.Background(), proof{claims: c}.sign(t), req); err != nil {
		t.Fatalf("with the nonce, at another instance: %v", err)
	}
	c["jti"] = "n3"
	if _, err := other.Verify(context.Background(), proof{claims: c}.sign(t), req); !errors.Is(err, ErrUseNonce) {
		t.Fatalf("nonce of another key: err = %v, want ErrUseNonce", err)
	}
	for _, bad := range []string{"", "x", e.Nonce + "A", strings.ToUpper(e.Nonce)} {
		c := goodClaims("n4" + bad)
		c["nonce"] = bad
		if _, err := a.Verify(context.Background(), proof{claims: c}.sign(t), req); !errors.Is(err, ErrUseNonce) {
			t.Fatalf("nonce %q: err = %v, want ErrUseNonce", bad, err)
		}
	}
	// Past its lifetime the nonce is refused, with a new one.
	now = testNow.Add(DefaultNonceLifetime + time.Second)
	c = goodClaims("n5")
	c["iat"] = now.Unix()
	c["nonce"] = e.Nonce
	_, err = a.Verify(context.Background(), proof{claims: c}.sign(t), req)
	var e2 *Error
	if !errors.As(err, &e2) || !errors.Is(err, ErrUseNonce) || e2.Nonce == e.Nonce || e2.Nonce == "" {
		t.Fatalf("expired nonce: err = %v", err)
	}
}

// TestNoNonceWithoutKey: without a nonce key, a proof's nonce claim is not
// checked and NewNonce is empty.
func TestNoNonceWithoutKey(t *testing.T) {
	v := newTestVerifier(t, Config{})
	if v.NoncesRequired() || v.NewNonce() != "" {
		t.Fatal("nonces without a key")
	}
	c := goodClaims("nn")
	c["nonce"] = "whatever"
	if _, err := v.Verify(context.Background(), proof{claims: c}.sign(t), Request{Method: "POST", URL: testURL}); err != nil {
		t.Fatal(err)
	}
}

// TestAlgsRestrict: an algorithm left out of Config.Algs is refused.
func TestAlgsRestrict(t *testing.T) {
	keys(t)
	v := newTestVerifier(t, Config{Algs: []string{"ES256"}})
	_, err := v.Verify(context.Background(), proof{alg: gojose.PS256, key: rsaKey, claims: goodClaims("r")}.sign(t), Request{Method: "POST", URL: testURL})
	if !errors.Is(err, ErrInvalidProof) {
		t.Fatalf("err = %v", err)
	}
	if got := v.Algs(); len(got) != 1 || got[0] != "ES256" {
		t.Fatalf("Algs = %v", got)
	}
}

// TestNewVerifierRefusesBadConfig: none, HS256, no replay, a short nonce key.
func TestNewVerifierRefusesBadConfig(t *testing.T) {
	for name, cfg := range map[string]Config{
		"alg none":        {Algs: []string{"none"}, Replay: &memReplay{}},
		"alg HS256":       {Algs: []string{"HS256"}, Replay: &memReplay{}},
		"no algs":         {Algs: []string{}, Replay: &memReplay{}},
		"no replay":       {},
		"short nonce key": {NonceKey: []byte("short"), Replay: &memReplay{}},
		"negative window": {Window: -time.Second, Replay: &memReplay{}},
	} {
		if _, err := NewVerifier(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestNormalizeHTU covers RFC 3986 §6.2.2 and §6.2.3 as RFC 9449 §4.3 asks.
func TestNormalizeHTU(t *testing.T) {
	for in, want := range map[string]string{
		"https://proxy.example/token":           "https://proxy.example/token",
		"HTTPS://PROXY.example:443/token?a=b#c": "https://proxy.example/token",
		"http://proxy.example:80":               "http://proxy.example/",
		"https://proxy.example:8443/a%2fb":      "https://proxy.example:8443/a%2Fb",
		"https://proxy.example/%7Euser":         "https://proxy.example/~user",
		"https://[::1]:443/token":               "https://[::1]/token",
		"https://proxy.example/Token":           "https://proxy.example/Token",
	} {
		got, err := NormalizeHTU(in)
		if err != nil || got != want {
			t.Errorf("NormalizeHTU(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "/token", "ftp://proxy.example/", "https://user@proxy.example/", "mailto:a@b", "https://%zz"} {
		if got, err := NormalizeHTU(bad); err == nil {
			t.Errorf("NormalizeHTU(%q) = %q, want an error", bad, got)
		}
	}
}
