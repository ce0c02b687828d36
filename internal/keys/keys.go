// Package keys holds cibaproxy's own signing keys: the keys of the "local"
// issuer, which signs ID tokens and access tokens and publishes its public
// keys at jwks_uri (OIDC Core §10.1, OIDC Discovery §3).
//
// Signing is go-jose's; this package chooses the key, its kid and alg, and
// where the key comes from: a file the operator provides, or a key generated
// once and kept in the store so that every instance sharing the store signs
// with the same key.
package keys

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"os"
	"strings"
	"time"

	gojose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/cibaproxy/cibaproxy/internal/fault"
	"github.com/cibaproxy/cibaproxy/internal/jose"
)

// Store record of a generated key.
const (
	// RecordKind is the store record kind of server-wide records.
	RecordKind = "server"
	// RecordKey is the key of the generated signing key (a private JWK).
	RecordKey = "signing-key"
)

// generatedRSABits is the size of a generated key.
const generatedRSABits = 2048

// Manager holds the issuer's private signing keys. The first key signs; all
// of them are published, so a key being retired still verifies the tokens
// it signed. A Manager is immutable and safe for concurrent use.
type Manager struct {
	keys   []gojose.JSONWebKey // private, with KeyID, Algorithm, Use
	public gojose.JSONWebKeySet
	keySet *jose.StaticKeySet
}

// New returns a Manager over private keys (*rsa.PrivateKey of at least
// 2048 bits, signing RS256, or *ecdsa.PrivateKey on P-256, P-384 or P-521,
// signing ES256, ES384 or ES512). The first key signs.
func New(keys ...crypto.Signer) (*Manager, error) {
	jwks := make([]gojose.JSONWebKey, 0, len(keys))
	for _, k := range keys {
		jwks = append(jwks, gojose.JSONWebKey{Key: k})
	}
	return fromJWKs(jwks, Algs{})
}

// Records is the part of a store the keys are kept in (a ciba.Store is
// one): GetRecord answers an error wrapping fault.ErrNotFound for a key
// never stored, PutRecord one wrapping fault.ErrExists for a key already
// stored.
type Records interface {
	GetRecord(ctx context.Context, kind, key string) ([]byte, error)
	PutRecord(ctx context.Context, kind, key string, value []byte, ttl time.Duration) error
}

// LoadOrCreate returns the issuer's keys. With file set, the keys are read
// from it: PEM blocks (PKCS#1 "RSA PRIVATE KEY", PKCS#8 "PRIVATE KEY", SEC1
// "EC PRIVATE KEY"; the first block signs) or a private JWK or JWK Set. Else
// the key kept in store under RecordKind/RecordKey is used, and if there is
// none an RSA 2048 key is generated and stored; if another instance stored
// one first (fault.ErrExists), that one is used. Note that the stored key is
// a plain private JWK: protect the store accordingly.
func LoadOrCreate(ctx context.Context, store Records, file string) (*Manager, error) {
	return loadOrCreate(ctx, store, file, Algs{})
}

// loadOrCreate is LoadOrCreate under the algorithm policy algs: a key is
// generated for algs.Generate, and an RSA key of the file without an alg
// of its own gets algs' default (see Algs). The algorithms are not checked
// against algs.Allowed here: see Open.
func loadOrCreate(ctx context.Context, store Records, file string, algs Algs) (*Manager, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("keys: %w", err)
		}
		m, err := parse(b, algs)
		if err != nil {
			return nil, fmt.Errorf("keys: %s: %w", file, err)
		}
		return m, nil
	}
	if store == nil {
		return nil, errors.New("keys: neither a key file nor a store")
	}
	b, err := store.GetRecord(ctx, RecordKind, RecordKey)
	if errors.Is(err, fault.ErrNotFound) {
		b, err = create(ctx, store, algs.Generate)
	}
	if err != nil {
		return nil, fmt.Errorf("keys: signing key in the store: %w", err)
	}
	m, err := parse(b, algs)
	if err != nil {
		return nil, fmt.Errorf("keys: signing key in the store: %w", err)
	}
	return m, nil
}

// create generates a key of alg (see generate) and stores it; if another
// instance stored one in the meantime, it returns that one.
func create(ctx context.Context, store Records, alg string) ([]byte, error) {
	k, err := generate(alg)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(k)
	if err != nil {
		return nil, err
	}
	switch err := store.PutRecord(ctx, RecordKind, RecordKey, b, 0); {
	case err == nil:
		return b, nil
	case errors.Is(err, fault.ErrExists):
		return store.GetRecord(ctx, RecordKind, RecordKey)
	default:
		return nil, err
	}
}

// generate returns a new private signing JWK for alg: RSA 2048 for RS256
// (also when alg is empty) and PS256, EC P-256 for ES256.
func generate(alg string) (gojose.JSONWebKey, error) {
	var (
		k   crypto.Signer
		err error
	)
	switch alg {
	case "", string(gojose.RS256), string(gojose.PS256):
		if alg == "" {
			alg = string(gojose.RS256)
		}
		k, err = rsa.GenerateKey(rand.Reader, generatedRSABits)
	case string(gojose.ES256):
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		return gojose.JSONWebKey{}, fmt.Errorf("keys: cannot generate a key for alg %q (want RS256, PS256 or ES256)", alg)
	}
	if err != nil {
		return gojose.JSONWebKey{}, fmt.Errorf("keys: generate a %s key: %w", alg, err)
	}
	return gojose.JSONWebKey{Key: k, Algorithm: alg, Use: "sig"}, nil
}

// Parse reads private keys from PEM (PKCS#1, PKCS#8, SEC1; "EC PARAMETERS"
// blocks are skipped) or from a JWK or JWK Set, and returns a Manager over
// them.
func Parse(b []byte) (*Manager, error) { return parse(b, Algs{}) }

// parse is Parse, giving RSA keys without an alg algs' default.
func parse(b []byte, algs Algs) (*Manager, error) {
	trimmed := bytes.TrimSpace(b)
	if bytes.HasPrefix(trimmed, []byte("{")) {
		jwks, err := parseJWK(trimmed)
		if err != nil {
			return nil, err
		}
		return fromJWKs(jwks, algs)
	}
	var jwks []gojose.JSONWebKey
	rest := trimmed
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		k, err := parsePEMBlock(block)
		if err != nil {
			return nil, err
		}
		if k != nil {
			jwks = append(jwks, gojose.JSONWebKey{Key: k})
		}
	}
	if len(jwks) == 0 {
		return nil, errors.New("no private key found (want PEM or JWK)")
	}
	return fromJWKs(jwks, algs)
}

func parsePEMBlock(block *pem.Block) (crypto.Signer, error) {
	if _, ok := block.Headers["Proc-Type"]; ok {
		return nil, errors.New("encrypted PEM keys are not supported")
	}
	switch block.Type {
	case "RSA PRIVATE KEY":
		return x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		return x509.ParseECPrivateKey(block.Bytes)
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, err
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("unsupported PKCS#8 key type %T", k)
		}
		return s, nil
	case "EC PARAMETERS":
		return nil, nil
	default:
		return nil, fmt.Errorf("PEM block %q is not a private key", block.Type)
	}
}

// parseJWK reads a private JWK or a JWK Set of private keys.
func parseJWK(b []byte) ([]gojose.JSONWebKey, error) {
	var probe struct {
		Keys json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return nil, fmt.Errorf("not a JWK: %w", err)
	}
	if probe.Keys != nil {
		var set gojose.JSONWebKeySet
		if err := json.Unmarshal(b, &set); err != nil {
			return nil, fmt.Errorf("not a JWK Set: %w", err)
		}
		return set.Keys, nil
	}
	var k gojose.JSONWebKey
	if err := json.Unmarshal(b, &k); err != nil {
		return nil, fmt.Errorf("not a JWK: %w", err)
	}
	return []gojose.JSONWebKey{k}, nil
}

// fromJWKs checks private keys, gives each its alg (the JWK's own, if it
// fits the key, else the default for the key under algs) and its kid (the
// RFC 7638 thumbprint), and builds the Manager.
func fromJWKs(in []gojose.JSONWebKey, algs Algs) (*Manager, error) {
	if len(in) == 0 {
		return nil, errors.New("keys: no signing key")
	}
	m := &Manager{}
	seen := map[string]bool{}
	for i, k := range in {
		if k.Use != "" && k.Use != "sig" {
			return nil, fmt.Errorf("keys: key %d has use %q; want \"sig\"", i, k.Use)
		}
		if k.IsPublic() {
			return nil, fmt.Errorf("keys: key %d is a public key; a signing key must be private", i)
		}
		if !k.Valid() {
			return nil, fmt.Errorf("keys: key %d is not a valid private key", i)
		}
		alg, err := algFor(k.Key, k.Algorithm, algs.rsaDefault())
		if err != nil {
			return nil, fmt.Errorf("keys: key %d: %w", i, err)
		}
		tp, err := k.Thumbprint(crypto.SHA256)
		if err != nil {
			return nil, fmt.Errorf("keys: key %d: %w", i, err)
		}
		kid := base64.RawURLEncoding.EncodeToString(tp)
		if seen[kid] {
			return nil, fmt.Errorf("keys: key %d appears twice", i)
		}
		seen[kid] = true
		if rk, ok := k.Key.(*rsa.PrivateKey); ok {
			// A key parsed from a JWK has its CRT values but not the
			// checked form crypto/rsa signs with, which each signature
			// would otherwise rebuild (and check) again: a quarter of
			// the cost of an RS256 signature.
			rk.Precompute()
		}
		priv := gojose.JSONWebKey{Key: k.Key, KeyID: kid, Algorithm: alg, Use: "sig"}
		m.keys = append(m.keys, priv)
		m.public.Keys = append(m.public.Keys, priv.Public())
	}
	ks, err := jose.NewStaticKeySet(m.public)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	m.keySet = ks
	return m, nil
}

// algFor returns the signature algorithm of a private key: want if it fits
// the key, else rsaDefault for RSA and ES256/384/512 by curve for EC.
func algFor(key any, want, rsaDefault string) (string, error) {
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if n := k.N.BitLen(); n < generatedRSABits {
			return "", fmt.Errorf("an RSA key of %d bits; at least %d are required", n, generatedRSABits)
		}
		switch want {
		case "":
			return rsaDefault, nil
		case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
			return want, nil
		}
	case *ecdsa.PrivateKey:
		var alg string
		switch k.Curve {
		case elliptic.P256():
			alg = string(gojose.ES256)
		case elliptic.P384():
			alg = string(gojose.ES384)
		case elliptic.P521():
			alg = string(gojose.ES512)
		default:
			return "", errors.New("an EC key on an unsupported curve")
		}
		if want == "" || want == alg {
			return alg, nil
		}
	default:
		return "", fmt.Errorf("unsupported key type %T (want RSA or EC)", key)
	}
	return "", fmt.Errorf("alg %q does not fit the key", want)
}

// Sign returns claims as a compact JWS signed with the first key, with the
// kid and the given typ header ("JWT" for ID tokens, "at+jwt" for access
// tokens, RFC 9068 §2.1). claims is anything that marshals to a JSON
// object. typ is required: every JWT the issuer signs names its role
// explicitly (RFC 8725 §3.11), so none can be replayed in another.
func (m *Manager) Sign(claims any, typ string) (string, error) {
	if typ == "" {
		return "", errors.New("keys: signing: a typ header is required (RFC 8725 §3.11)")
	}
	k := m.keys[0]
	opts := &gojose.SignerOptions{}
	opts.WithType(gojose.ContentType(typ))
	s, err := gojose.NewSigner(gojose.SigningKey{Algorithm: gojose.SignatureAlgorithm(k.Algorithm), Key: k}, opts)
	if err != nil {
		return "", fmt.Errorf("keys: %w", err)
	}
	out, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		return "", fmt.Errorf("keys: signing: %w", err)
	}
	return out, nil
}

// Alg is the JWS algorithm Sign uses.
func (m *Manager) Alg() string { return m.keys[0].Algorithm }

// KeyID is the kid of the key Sign uses.
func (m *Manager) KeyID() string { return m.keys[0].KeyID }

// PublicJWKS returns the public keys, with kid, alg and use "sig", as
// served at jwks_uri. The caller may modify the result.
func (m *Manager) PublicJWKS() gojose.JSONWebKeySet {
	return gojose.JSONWebKeySet{Keys: append([]gojose.JSONWebKey(nil), m.public.Keys...)}
}

// KeySet verifies tokens signed by this issuer, such as id_token_hints.
func (m *Manager) KeySet() jose.KeySet { return m.keySet }

// LeftHash returns the at_hash, c_hash or rt_hash of value for a token
// signed with alg: the base64url encoding of the left half of the hash of
// value, with the hash of alg (SHA-256 for *256, SHA-384 for *384, SHA-512
// for *512 and for EdDSA). It returns "" for an alg it does not know.
//
// https://openid.net/specs/openid-connect-core-1_0.html#CodeIDToken
// https://openid.net/specs/openid-client-initiated-backchannel-authentication-core-1_0.html#rfc.section.10.3.1
func LeftHash(alg, value string) string {
	var h hash.Hash
	switch {
	case alg == "EdDSA", strings.HasSuffix(alg, "512"):
		h = sha512.New()
	case strings.HasSuffix(alg, "384"):
		h = sha512.New384()
	case strings.HasSuffix(alg, "256"):
		h = sha256.New()
	default:
		return ""
	}
	h.Write([]byte(value))
	sum := h.Sum(nil)
	return base64.RawURLEncoding.EncodeToString(sum[:len(sum)/2])
}
