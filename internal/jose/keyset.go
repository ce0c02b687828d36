package jose

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	gojose "github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"
)

// KeySet holds the public keys of one signer (a client, a trusted hint
// issuer, or cibaproxy itself) and verifies signatures with them.
//
// Verify parses the compact JWS, verifies its signature with one of the
// set's keys and returns the payload. It checks the signature only: it does
// not need to check the signature algorithm against a policy, nor the issuer,
// audience, expiry or any other claim, because the verifiers of this package
// check those, and check them before they call Verify. Implementations of this
// package accept only asymmetric algorithms (RS*, PS*, ES*, EdDSA), so a key
// set can never be made to verify an HMAC with a public key.
//
// If Verify makes HTTP requests it uses the HTTP client associated with ctx
// by oidc.ClientContext, like go-oidc.
type KeySet interface {
	Verify(ctx context.Context, jws string) (payload []byte, err error)
}

// Errors a KeySet of this package wraps; test with errors.Is.
var (
	// ErrUnknownKey: no key of the set has the JWS's kid, or none fits its
	// alg (key type, curve, "alg" and "use" of the JWK).
	ErrUnknownKey = errors.New("jose: no matching key")
	// ErrKeysUnavailable: the keys at a jwks_uri could not be fetched.
	ErrKeysUnavailable = errors.New("jose: keys unavailable")
)

// asymmetricAlgs are the algorithms a KeySet accepts when it parses.
func asymmetricAlgs() []gojose.SignatureAlgorithm {
	return []gojose.SignatureAlgorithm{
		gojose.RS256, gojose.RS384, gojose.RS512,
		gojose.PS256, gojose.PS384, gojose.PS512,
		gojose.ES256, gojose.ES384, gojose.ES512,
		gojose.EdDSA,
	}
}

// minRSABits is the smallest RSA modulus a key set accepts (RFC 7518 §3.3
// requires 2048 bits for RS*, §3.5 for PS*).
const minRSABits = 2048

// StaticKeySet is a KeySet over keys known in advance, such as a client's
// registered "jwks" or cibaproxy's own public keys.
type StaticKeySet struct {
	keys []gojose.JSONWebKey
}

// NewStaticKeySet returns a key set over the signature keys of jwks. A JWS
// with a kid is verified with the key of that kid; a JWS without one with
// each key whose type, curve, "alg" and "use" fit its alg, in order (RFC 7515
// §4.1.4 makes kid optional).
//
// Keys whose "use" is "enc" are skipped. Symmetric keys, private keys, RSA
// keys under 2048 bits and keys of other types are refused with an error,
// and so is a set without any signature key: these are configuration
// mistakes, better reported at startup than as failed verifications.
func NewStaticKeySet(jwks gojose.JSONWebKeySet) (*StaticKeySet, error) {
	s := &StaticKeySet{}
	for i, k := range jwks.Keys {
		name := fmt.Sprintf("key %d", i)
		if k.KeyID != "" {
			name = fmt.Sprintf("key %q", k.KeyID)
		}
		if k.Use == "enc" {
			continue
		}
		if k.Use != "" && k.Use != "sig" {
			return nil, fmt.Errorf("jose: %s has use %q; want \"sig\"", name, k.Use)
		}
		if _, ok := k.Key.([]byte); ok {
			return nil, fmt.Errorf("jose: %s is a symmetric key; a key set holds public keys only", name)
		}
		if !k.Valid() {
			return nil, fmt.Errorf("jose: %s is not a valid key", name)
		}
		if !k.IsPublic() {
			return nil, fmt.Errorf("jose: %s is a private key; register its public part only", name)
		}
		switch pub := k.Key.(type) {
		case *rsa.PublicKey:
			if pub.N.BitLen() < minRSABits {
				return nil, fmt.Errorf("jose: %s is an RSA key of %d bits; at least %d are required", name, pub.N.BitLen(), minRSABits)
			}
		case *ecdsa.PublicKey, ed25519.PublicKey:
		default:
			return nil, fmt.Errorf("jose: %s has an unsupported key type %T", name, k.Key)
		}
		if k.Algorithm != "" && !isAsymmetric(k.Algorithm) {
			return nil, fmt.Errorf("jose: %s has alg %q, not a signature algorithm this server verifies", name, k.Algorithm)
		}
		s.keys = append(s.keys, k)
	}
	if len(s.keys) == 0 {
		return nil, errors.New("jose: the key set has no signature keys")
	}
	return s, nil
}

// Keys returns the public keys of the set.
func (s *StaticKeySet) Keys() []gojose.JSONWebKey {
	return append([]gojose.JSONWebKey(nil), s.keys...)
}

// Verify implements KeySet.
func (s *StaticKeySet) Verify(_ context.Context, raw string) ([]byte, error) {
	jws, err := gojose.ParseSignedCompact(raw, asymmetricAlgs())
	if err != nil {
		return nil, fmt.Errorf("jose: malformed JWS: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("jose: the JWS must carry exactly one signature")
	}
	h := jws.Signatures[0].Header
	alg := h.Algorithm
	tried := 0
	for i := range s.keys {
		k := &s.keys[i]
		if h.KeyID != "" && k.KeyID != h.KeyID {
			continue
		}
		if !fits(k, alg) {
			continue
		}
		tried++
		if payload, err := jws.Verify(k); err == nil {
			return payload, nil
		}
	}
	switch {
	case tried > 0:
		return nil, errors.New("jose: the signature does not verify")
	case h.KeyID != "":
		return nil, fmt.Errorf("%w: no key has kid %q for alg %s", ErrUnknownKey, h.KeyID, alg)
	default:
		return nil, fmt.Errorf("%w: no key fits alg %s", ErrUnknownKey, alg)
	}
}

// fits reports whether k may verify a signature made with alg: its "use"
// and "alg", if set, allow it, and its type (and curve) is the alg's.
func fits(k *gojose.JSONWebKey, alg string) bool {
	if k.Use != "" && k.Use != "sig" {
		return false
	}
	if k.Algorithm != "" && k.Algorithm != alg {
		return false
	}
	switch pub := k.Key.(type) {
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case *ecdsa.PublicKey:
		switch alg {
		case "ES256":
			return pub.Curve == elliptic.P256()
		case "ES384":
			return pub.Curve == elliptic.P384()
		case "ES512":
			return pub.Curve == elliptic.P521()
		}
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}

func isAsymmetric(alg string) bool {
	for _, a := range asymmetricAlgs() {
		if string(a) == alg {
			return true
		}
	}
	return false
}

// Limits of the fetches of a jwks_uri.
const (
	// remoteFetchTimeout bounds one fetch when ctx carries no HTTP client.
	remoteFetchTimeout = 10 * time.Second
	// remoteMinInterval is the least time between two fetches of one
	// jwks_uri. go-oidc fetches again whenever a JWS fails to verify with
	// the cached keys, so without it every forged client assertion naming
	// a client with a jwks_uri would make cibaproxy fetch that URI.
	remoteMinInterval = 5 * time.Second
	// remoteMaxBody bounds the size of a fetched JWK Set.
	remoteMaxBody = 1 << 20
)

// RemoteKeySet is a KeySet over the keys published at a jwks_uri. It is
// go-oidc's RemoteKeySet: keys are cached in memory and fetched again when a
// JWS names a kid the cache does not have (or fails to verify with the cached
// keys), with concurrent fetches merged into one, as OIDC Core §10.1.1
// recommends for key rotation. On top of go-oidc, fetches of one jwks_uri
// are at least 5 s apart (a verification that would need a fetch sooner
// fails with ErrKeysUnavailable) and a response over 1 MiB is refused.
type RemoteKeySet struct {
	uri    string
	ks     *oidc.RemoteKeySet
	client *http.Client // the throttled client of ks, for Keys

	// keys cached by Keys (go-oidc's cache is not reachable); fetching
	// holds the token of the channel, so fetches are not made twice.
	fetching chan struct{}
	keys     []gojose.JSONWebKey
	fetched  bool
}

// NewRemoteKeySet returns a key set over the keys at uri. ctx configures the
// fetches, not their cancellation: an HTTP client set with oidc.ClientContext
// is used for every fetch; without one, a client with a 10 s timeout that
// does not follow redirects. Create one RemoteKeySet per jwks_uri and reuse
// it: the cache lives in it.
func NewRemoteKeySet(ctx context.Context, uri string) *RemoteKeySet {
	return newRemoteKeySet(ctx, uri, remoteMinInterval)
}

func newRemoteKeySet(ctx context.Context, uri string, every time.Duration) *RemoteKeySet {
	base, _ := ctx.Value(oauth2.HTTPClient).(*http.Client)
	if base == nil {
		base = &http.Client{
			Timeout:       remoteFetchTimeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	c := *base
	next := c.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	c.Transport = &throttle{next: next, every: every}
	return &RemoteKeySet{uri: uri, ks: oidc.NewRemoteKeySet(oidc.ClientContext(ctx, &c), uri), client: &c, fetching: make(chan struct{}, 1)}
}

// Keys returns the public keys published at the jwks_uri, to match a
// client certificate against (self_signed_tls_client_auth, RFC 8705
// §2.2): those fetched before, or freshly fetched ones when none were or
// when refresh is set (the client may have rotated its certificate).
// Fetches share Verify's limits: at most one per 5 s for the jwks_uri, so
// a refresh asked for sooner returns the keys fetched moments ago, and 1
// MiB. Keys with use "enc", and private or invalid ones, are left out. A
// failed fetch wraps ErrKeysUnavailable and keeps the keys fetched before.
func (r *RemoteKeySet) Keys(ctx context.Context, refresh bool) ([]gojose.JSONWebKey, error) {
	select {
	case r.fetching <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %s: %w", ErrKeysUnavailable, r.uri, ctx.Err())
	}
	defer func() { <-r.fetching }()
	if r.fetched && !refresh {
		return r.keys, nil
	}
	keys, err := r.fetch(ctx)
	switch {
	case errors.Is(err, errThrottled) && r.fetched:
		return r.keys, nil
	case err != nil:
		return nil, fmt.Errorf("%w: %s: %w", ErrKeysUnavailable, r.uri, err)
	}
	r.keys, r.fetched = keys, true
	return keys, nil
}

// fetch gets and parses the JWK Set at the jwks_uri.
func (r *RemoteKeySet) fetch(ctx context.Context) ([]gojose.JSONWebKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.uri, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %s", resp.Status)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return parseRemoteJWKS(body)
}

// parseRemoteJWKS reads a fetched JWK Set (RFC 7517 §5) and returns its
// public keys that may be signature keys, in order.
func parseRemoteJWKS(body []byte) ([]gojose.JSONWebKey, error) {
	var set gojose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("not a JWK Set: %w", err)
	}
	var keys []gojose.JSONWebKey
	for _, k := range set.Keys {
		if k.Use == "enc" || !k.Valid() || !k.IsPublic() { // IsPublic: no symmetric keys either
			continue
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("the JWK Set has no public signature keys")
	}
	return keys, nil
}

// errThrottled: a fetch was asked for sooner than remoteMinInterval after
// the previous one.
var errThrottled = errors.New("jose: jwks_uri fetched too recently")

// throttle is a RoundTripper that lets one request through per interval
// and bounds the size of response bodies.
type throttle struct {
	next  http.RoundTripper
	every time.Duration

	mu   sync.Mutex
	last time.Time
}

func (t *throttle) RoundTrip(req *http.Request) (*http.Response, error) {
	t.mu.Lock()
	now := time.Now()
	if !t.last.IsZero() && now.Sub(t.last) < t.every {
		t.mu.Unlock()
		return nil, errThrottled
	}
	t.last = now
	t.mu.Unlock()
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resp.Body = &limitedBody{ReadCloser: resp.Body, left: remoteMaxBody}
	return resp, nil
}

// limitedBody fails a read past its limit instead of truncating silently.
type limitedBody struct {
	io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, fmt.Errorf("jose: JWK Set larger than %d bytes", remoteMaxBody)
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	return n, err
}

// Verify implements KeySet. A failure to fetch the keys wraps
// ErrKeysUnavailable.
func (r *RemoteKeySet) Verify(ctx context.Context, raw string) ([]byte, error) {
	payload, err := r.ks.VerifySignature(ctx, raw)
	if err == nil {
		return payload, nil
	}
	// A fetch refused by the throttle means the keys were fetched moments
	// ago: the JWS does not verify with fresh keys. go-oidc wraps transport
	// errors and prefixes every fetch failure with "fetching keys"; anything
	// else is a signature that does not verify.
	if errors.Is(err, errThrottled) {
		return nil, fmt.Errorf("jose: the signature does not verify with the keys at %s, fetched less than %s ago", r.uri, remoteMinInterval)
	}
	var uerr *url.Error
	if errors.As(err, &uerr) || strings.HasPrefix(err.Error(), "fetching keys") || ctx.Err() != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrKeysUnavailable, r.uri, err)
	}
	return nil, fmt.Errorf("jose: the signature does not verify with the keys at %s: %w", r.uri, err)
}
