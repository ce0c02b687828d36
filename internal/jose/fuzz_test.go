package jose

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	gojose "github.com/go-jose/go-jose/v4"
)

// The fuzz targets check that the verifiers never panic, answer only
// protocol errors, and never accept a token whose claims break the policy.
// Seed corpora: testdata/fuzz/<target>/ plus the signed seeds added below.

// acceptAll is a Replay that never refuses, so the fuzzer can reach success.
type acceptAll struct{}

func (acceptAll) Seen(context.Context, string, time.Time) error { return nil }

// wantProtocolError checks that err is a ValidationError for a fault of
// the token (not of the policy).
func wantProtocolError(t *testing.T, err error) {
	t.Helper()
	var e *ValidationError
	if !errors.As(err, &e) {
		t.Fatalf("err = %v (%T), want a *ValidationError", err, err)
	}
	if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrExpired) {
		t.Fatalf("err = %v, want ErrInvalid or ErrExpired", err)
	}
}

func FuzzVerifyRequestObject(f *testing.F) {
	f.Add(sign(f, rs256(), requestClaims()))
	f.Add(sign(f, signer{alg: gojose.ES256, key: ecKey1(), kid: "ec1"}, requestClaims()))
	f.Add(sign(f, signer{alg: gojose.HS256, key: []byte(testSecret)}, requestClaims()))
	f.Add(unsigned(f, requestClaims()))
	f.Add("")
	f.Add("..")
	p := requestPolicy(f)
	p.Replay = acceptAll{}
	p.AllowHS256, p.Secret = true, testSecret
	f.Fuzz(func(t *testing.T, raw string) {
		claims, err := VerifyRequestObject(context.Background(), raw, p)
		if err != nil {
			wantProtocolError(t, err)
			return
		}
		if claims["iss"] != testClient {
			t.Fatalf("accepted a request object with iss %v", claims["iss"])
		}
		if _, ok := claims["jti"].(string); !ok {
			t.Fatalf("accepted a request object without jti")
		}
	})
}

func FuzzVerifyLoginHintToken(f *testing.F) {
	f.Add(sign(f, rs256(), map[string]any{"iss": testClient, "sub": "alice"}))
	f.Add(sign(f, hubSigner(), map[string]any{"iss": trustedIssuer, "sub_id": map[string]any{"format": "email", "email": "a@example.com"}}))
	f.Add(sign(f, rs256(), map[string]any{"iss": testClient, "sub": "alice", "exp": testNow.Add(-time.Hour).Unix()}))
	f.Add(unsigned(f, map[string]any{"iss": testClient, "sub": "alice"}))
	p := hintPolicy(f)
	f.Fuzz(func(t *testing.T, raw string) {
		claims, err := VerifyLoginHintToken(context.Background(), raw, p)
		if err != nil {
			wantProtocolError(t, err)
			return
		}
		if iss := claims["iss"]; iss != testClient && iss != trustedIssuer {
			t.Fatalf("accepted a login_hint_token of issuer %v", iss)
		}
		if _, _, err := HintSubject(claims); err != nil {
			wantProtocolError(t, err)
		}
	})
}

func FuzzVerifyIDTokenHint(f *testing.F) {
	opKeys, err := NewStaticKeySet(gojose.JSONWebKeySet{Keys: []gojose.JSONWebKey{publicJWK(rsaKey2(), "op")}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sign(f, signer{alg: gojose.RS256, key: rsaKey2(), kid: "op"}, idTokenClaims()))
	f.Add(unsigned(f, idTokenClaims()))
	p := IDTokenHintPolicy{Issuer: testIssuer, ClientID: testClient, KeySet: opKeys}
	f.Fuzz(func(t *testing.T, raw string) {
		claims, err := VerifyIDTokenHint(context.Background(), raw, p)
		if err != nil {
			wantProtocolError(t, err)
			return
		}
		if claims["iss"] != testIssuer {
			t.Fatalf("accepted an id_token_hint of issuer %v", claims["iss"])
		}
	})
}

func FuzzHintSubject(f *testing.F) {
	f.Add([]byte(`{"sub":"alice"}`))
	f.Add([]byte(`{"sub_id":{"format":"iss_sub","iss":"https://a","sub":"b"}}`))
	f.Add([]byte(`{"sub_id":{"format":"phone","phone":1}}`))
	f.Add([]byte(`{"sub_id":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var claims map[string]any
		if json.Unmarshal(data, &claims) != nil {
			return
		}
		s, err := HintSubjectID(claims)
		if err != nil {
			wantProtocolError(t, err)
			return
		}
		if s.Kind == "" || s.Value == "" {
			t.Fatalf("HintSubjectID = %+v without error", s)
		}
	})
}
