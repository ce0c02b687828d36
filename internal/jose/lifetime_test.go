package jose

import (
	"testing"
	"time"
)

// TestRequestObjectLifetime: every client's request objects are bounded
// like a FAPI client's (DefaultRequestObjectMaxLifetime, 60 minutes from
// nbf), so a jti is never stored for longer; a policy may set a shorter
// bound.
func TestRequestObjectLifetime(t *testing.T) {
	tests := []struct {
		name   string
		nbf    time.Time
		exp    time.Time
		max    time.Duration
		accept bool
		desc   []string
	}{
		{name: "exp exactly 60 minutes after nbf is accepted without any policy bound", nbf: testNow, exp: testNow.Add(time.Hour), accept: true},
		{name: "exp 60 minutes and 1 second after nbf is refused, naming the limit", nbf: testNow, exp: testNow.Add(time.Hour + time.Second),
			desc: []string{"request object: exp is 1h0m1s after nbf, over the limit of 1h0m0s"}},
		{name: "a far exp (one year) is refused", nbf: testNow, exp: testNow.AddDate(1, 0, 0),
			desc: []string{"over the limit of 1h0m0s"}},
		{name: "nbf exactly 60 minutes old is accepted", nbf: testNow.Add(-time.Hour), exp: testNow.Add(time.Minute - time.Hour), accept: true},
		{name: "nbf 60 minutes and 1 second old is refused", nbf: testNow.Add(-time.Hour - time.Second), exp: testNow.Add(time.Minute - time.Hour),
			desc: []string{"nbf 2026-03-01T10:59:59Z is more than 1h0m0s old"}},
		{name: "a policy's shorter bound applies: exactly 10 minutes is accepted", nbf: testNow, exp: testNow.Add(10 * time.Minute), max: 10 * time.Minute, accept: true},
		{name: "a policy's shorter bound applies: 10 minutes and 1 second is refused", nbf: testNow, exp: testNow.Add(10*time.Minute + time.Second), max: 10 * time.Minute,
			desc: []string{"exp is 10m1s after nbf, over the limit of 10m0s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := requestPolicy(t)
			// A large skew, so that only the lifetime bound decides.
			p.ClockSkew = 2 * time.Hour
			p.MaxLifetime = tt.max
			c := requestClaims()
			c["iat"], c["nbf"], c["exp"] = tt.nbf.Unix(), tt.nbf.Unix(), tt.exp.Unix()
			_, err := VerifyRequestObject(t.Context(), sign(t, rs256(), c), p)
			if tt.accept {
				if err != nil {
					t.Fatalf("VerifyRequestObject: %v", err)
				}
				return
			}
			wantError(t, err, ErrInvalid, tt.desc...)
		})
	}
}

// TestAssertionLifetime: a client assertion expires at most
// DefaultAssertionMaxLifetime (5 minutes) after its iat, else its nbf, else
// now plus the clock skew; a policy may set another bound.
func TestAssertionLifetime(t *testing.T) {
	tests := []struct {
		name   string
		claims func(map[string]any)
		max    time.Duration
		accept bool
		desc   []string
	}{
		{name: "exp exactly 5 minutes after iat is accepted", accept: true,
			claims: func(c map[string]any) { c["iat"], c["exp"] = testNow.Unix(), testNow.Add(5*time.Minute).Unix() }},
		{name: "exp 5 minutes and 1 second after iat is refused, naming the limit",
			claims: func(c map[string]any) {
				c["iat"], c["exp"] = testNow.Unix(), testNow.Add(5*time.Minute+time.Second).Unix()
			},
			desc: []string{"client assertion: exp is 5m1s after iat, over the limit of 5m0s"}},
		{name: "a far exp (one year) is refused",
			claims: func(c map[string]any) { c["exp"] = testNow.AddDate(1, 0, 0).Unix() },
			desc:   []string{"after iat, over the limit of 5m0s"}},
		{name: "an old iat bounds exp: iat 4 minutes ago, exp in 1 minute is accepted", accept: true,
			claims: func(c map[string]any) {
				c["iat"], c["exp"] = testNow.Add(-4*time.Minute).Unix(), testNow.Add(time.Minute).Unix()
			}},
		{name: "an old iat bounds exp: iat 4 minutes ago, exp in 1 minute 1 second is refused",
			claims: func(c map[string]any) {
				c["iat"], c["exp"] = testNow.Add(-4*time.Minute).Unix(), testNow.Add(time.Minute+time.Second).Unix()
			},
			desc: []string{"exp is 5m1s after iat"}},
		{name: "without iat, nbf bounds exp: exactly 5 minutes is accepted", accept: true,
			claims: func(c map[string]any) {
				delete(c, "iat")
				c["nbf"], c["exp"] = testNow.Unix(), testNow.Add(5*time.Minute).Unix()
			}},
		{name: "without iat, nbf bounds exp: 5 minutes and 1 second is refused",
			claims: func(c map[string]any) {
				delete(c, "iat")
				c["nbf"], c["exp"] = testNow.Unix(), testNow.Add(5*time.Minute+time.Second).Unix()
			},
			desc: []string{"exp is 5m1s after nbf, over the limit of 5m0s"}},
		{name: "without iat and nbf, exp exactly 5 minutes plus the 60 s skew from now is accepted", accept: true,
			claims: func(c map[string]any) {
				delete(c, "iat")
				c["exp"] = testNow.Add(6 * time.Minute).Unix()
			}},
		{name: "without iat and nbf, exp 1 second later is refused",
			claims: func(c map[string]any) {
				delete(c, "iat")
				c["exp"] = testNow.Add(6*time.Minute + time.Second).Unix()
			},
			desc: []string{"exp is 6m1s from now and there is no iat, over the limit of 5m0s (plus 1m0s clock skew)"}},
		{name: "a policy's bound applies: exactly 1 minute after iat is accepted", max: time.Minute, accept: true,
			claims: func(c map[string]any) { c["iat"], c["exp"] = testNow.Unix(), testNow.Add(time.Minute).Unix() }},
		{name: "a policy's bound applies: 1 minute and 1 second after iat is refused", max: time.Minute,
			claims: func(c map[string]any) {
				c["iat"], c["exp"] = testNow.Unix(), testNow.Add(time.Minute+time.Second).Unix()
			},
			desc: []string{"exp is 1m1s after iat, over the limit of 1m0s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := assertionPolicy(t)
			p.MaxLifetime = tt.max
			c := assertionClaims()
			tt.claims(c)
			raw := sign(t, rs256(), c)
			err := VerifyClientAssertion(t.Context(), raw, p)
			if tt.accept {
				if err != nil {
					t.Fatalf("VerifyClientAssertion: %v", err)
				}
				return
			}
			wantError(t, err, ErrInvalid, tt.desc...)
			// A refused assertion does not consume its jti: the same jti
			// with a lifetime in bounds is accepted afterwards.
			c["iat"], c["exp"] = testNow.Unix(), testNow.Add(time.Minute).Unix()
			delete(c, "nbf")
			if err := VerifyClientAssertion(t.Context(), sign(t, rs256(), c), p); err != nil {
				t.Fatalf("the jti of a refused assertion was consumed: %v", err)
			}
		})
	}
}
