package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestDefaults(t *testing.T) {
	c := mustParse(t, doc(nil), noEnv)
	want := Config{
		Issuer: "https://ciba.example.com",
		Listen: "127.0.0.1:8080",
		Log:    Log{Level: "info", Format: "text"},
		Store:  Store{Type: "embedded", Path: "./data/cibaproxy.db"},
		CIBA: CIBA{
			DefaultExpiry: 5 * time.Minute, MaxExpiry: 30 * time.Minute, Interval: 5 * time.Second,
			LongPoll: 0, ExpiredGrace: 10 * time.Minute, BindingMessageMax: 64,
		},
		Tokens: Tokens{AccessTokenTTL: 10 * time.Minute, IDTokenTTL: 10 * time.Minute, RefreshTokenTTL: 24 * time.Hour},
	}
	if c.Issuer != want.Issuer || c.Listen != want.Listen || c.Log != want.Log || c.Store.Type != want.Store.Type || c.Store.Path != want.Store.Path || !reflect.DeepEqual(c.CIBA, want.CIBA) {
		t.Errorf("got %+v %+v %+v %+v %+v\nwant %+v %+v %+v %+v %+v",
			c.Issuer, c.Listen, c.Log, c.Store, c.CIBA, want.Issuer, want.Listen, want.Log, want.Store, want.CIBA)
	}
	if c.Tokens.AccessTokenTTL != want.Tokens.AccessTokenTTL || c.Tokens.IDTokenTTL != want.Tokens.IDTokenTTL ||
		c.Tokens.RefreshTokenTTL != want.Tokens.RefreshTokenTTL {
		t.Errorf("tokens = %+v, want %+v", c.Tokens, want.Tokens)
	}
	if c.Channels.Webhook != (Webhook{Timeout: 5 * time.Second}) {
		t.Errorf("webhook = %+v, want off with a 5s timeout", c.Channels.Webhook)
	}
	if c.Upstream.Type != "local" || c.Upstream.Local.Users[0].Subject != "alice" {
		t.Errorf("upstream = %+v, want local with alice's subject defaulted to her username", c.Upstream)
	}
	cl := c.Clients[0]
	if cl.Name != "c1" || len(cl.TokenEndpointAuthMethods) != 1 || cl.TokenEndpointAuthMethods[0] != "client_secret_basic" || cl.Scopes != nil {
		t.Errorf("client = %+v, want name c1, [client_secret_basic], any scope", cl)
	}
}

// TestExplicitZero checks that a zero that means something is kept and not
// replaced by the default.
func TestExplicitZero(t *testing.T) {
	c := mustParse(t, doc(map[string]string{
		"ciba":   "ciba:\n  long_poll: 0s\n  expired_grace: 0s",
		"tokens": "tokens:\n  refresh_token_ttl: 0",
	}), noEnv)
	if c.Tokens.RefreshTokenTTL != 0 || c.CIBA.LongPoll != 0 || c.CIBA.ExpiredGrace != 0 {
		t.Errorf("refresh_token_ttl %v, long_poll %v, expired_grace %v; want all 0",
			c.Tokens.RefreshTokenTTL, c.CIBA.LongPoll, c.CIBA.ExpiredGrace)
	}
}

// TestEmptyAfterExpansionIsAbsent checks that "${UNSET}" in a typed value
// gives the default, as if the key were absent.
func TestEmptyAfterExpansionIsAbsent(t *testing.T) {
	c := mustParse(t, doc(map[string]string{
		"ciba":   "ciba:\n  interval: ${INTERVAL}\n  binding_message_max: ${MAX}",
		"tokens": "tokens:\n  refresh_token_ttl: ${REFRESH}",
	}), noEnv)
	if c.CIBA.Interval != 5*time.Second || c.CIBA.BindingMessageMax != 64 || c.Tokens.RefreshTokenTTL != 24*time.Hour {
		t.Errorf("interval %v, binding_message_max %d, refresh_token_ttl %v; want the defaults",
			c.CIBA.Interval, c.CIBA.BindingMessageMax, c.Tokens.RefreshTokenTTL)
	}
	c = mustParse(t, doc(map[string]string{
		"ciba": "ciba:\n  interval: ${INTERVAL}\n  binding_message_max: ${MAX}",
	}), envMap(map[string]string{"INTERVAL": "2s", "MAX": "128"}))
	if c.CIBA.Interval != 2*time.Second || c.CIBA.BindingMessageMax != 128 {
		t.Errorf("interval %v, binding_message_max %d; want 2s and 128 from the environment", c.CIBA.Interval, c.CIBA.BindingMessageMax)
	}
}

func TestSeveralProblemsReportedAtOnce(t *testing.T) {
	data := `issuer: ftp://x
listen: nowhere
ciba:
  interval: 5 seconds
  long_poll: 2m
upstream:
  local:
    users:
      - username: alice
clients:
  - client_id: a
    client_secret: s
    backchannel_token_delivery_mode: poll
  - client_id: b
    client_secret: s
    backchannel_token_delivery_mode: pong
    colour: blue
`
	ps := problemsOf(t, data, noEnv)
	want := `test.yaml:1: issuer: must be an absolute http or https URL, got "ftp://x"
test.yaml:2: listen: must be host:port, e.g. 127.0.0.1:8080 or :8080, got "nowhere"
test.yaml:4: ciba.interval: invalid duration "5 seconds": use a Go duration such as "20s", "5m" or "1h30m"
test.yaml:5: ciba.long_poll: must be between 0 (off) and 1m0s, got 2m0s
test.yaml:9: upstream.local.users[0].password_hash: required: the bcrypt hash of the user's password
test.yaml:16: clients[1].backchannel_token_delivery_mode: must be one of poll, ping, push, got "pong"
test.yaml:17: clients[1].colour: unknown key "colour"; the keys here are acts_for_user, allow_hs256_request_object, allowed_networks, authorization_details_types, backchannel_authentication_request_signing_alg, backchannel_client_notification_endpoint, backchannel_token_delivery_mode, backchannel_user_code_parameter, client_id, client_name, client_secret, client_secret_hash, device_authorization, dpop_bound_access_tokens, introspection, jwks, jwks_uri, profile, resources, scopes, skip_validation, tls_client_auth_san_dns, tls_client_auth_san_email, tls_client_auth_san_uri, tls_client_auth_subject_dn, tls_client_certificate_bound_access_tokens, token_endpoint_auth_methods, upstream_credentials`
	if got := ps.Error(); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestProblemFormat(t *testing.T) {
	for _, tt := range []struct {
		p    Problem
		want string
	}{
		{Problem{File: "c.yaml", Path: "clients[1].backchannel_token_delivery_mode", Line: 12, Message: "required"},
			"c.yaml:12: clients[1].backchannel_token_delivery_mode: required"},
		{Problem{File: "c.yaml", Line: 3, Message: "invalid YAML: x"}, "c.yaml:3: invalid YAML: x"},
		{Problem{File: "c.yaml", Message: "the file is empty"}, "c.yaml: the file is empty"},
	} {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
}

func TestDocumentProblems(t *testing.T) {
	for _, tt := range []struct {
		name, data string
		line       int
		msg        string
	}{
		{"a syntax error is reported with its line", "issuer: x\nlisten: y\nlog\nclients: z\n", 3, "invalid YAML: could not find expected ':'"},
		{"an empty file is an error", "", 0, "the file is empty"},
		{"a comment-only file is an error", "# nothing\n", 0, "the file is empty"},
		{"the document is a mapping", "- a\n- b\n", 1, "expected a mapping"},
		{"one document per file", doc(nil) + "---\nissuer: https://b.example.com\n", 12, "more than one YAML document"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ps := problemsOf(t, tt.data, noEnv)
			if len(ps) != 1 || ps[0].Line != tt.line || !strings.Contains(ps[0].Message, tt.msg) {
				t.Errorf("got %v, want one problem at line %d containing %q", ps, tt.line, tt.msg)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	var ps Problems
	if !errors.As(err, &ps) || len(ps) != 1 || !strings.Contains(ps[0].String(), "nope.yaml: cannot read the configuration") {
		t.Errorf("got %v, want one problem saying the file cannot be read", err)
	}
}

func TestUsersFile(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "users.yaml"), "# users\n"+
		"- username: bob\n  password_hash: \""+hashBobPassword+"\"\n  subject: ${BOB_SUB}\n"+
		"- username: carol\n  password_hash: \""+hashBobPassword+"\"\n")
	cfg := doc(map[string]string{
		"upstream": localUsers("username: alice\npassword_hash: \""+hashAlicePassword+"\"") + "\n    users_file: users.yaml",
	})
	path := filepath.Join(dir, "cibaproxy.yaml")
	write(t, path, cfg)
	t.Setenv("BOB_SUB", "u-0002")
	c, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	var got []string
	for _, u := range c.Upstream.Local.Users {
		got = append(got, u.Username+"="+u.Subject)
	}
	if strings.Join(got, " ") != "alice=alice bob=u-0002 carol=carol" {
		t.Errorf("users = %v, want inline alice, then bob and carol from the users file", got)
	}
	if c.Upstream.Local.UsersFile != filepath.Join(dir, "users.yaml") {
		t.Errorf("users_file = %q, want it resolved against the config's directory", c.Upstream.Local.UsersFile)
	}

	// Problems in the users file name that file, its lines and the
	// users_file path; uniqueness holds across both lists.
	write(t, filepath.Join(dir, "users.yaml"), "- username: alice\n  password_hash: \""+hashBobPassword+"\"\n"+
		"- username: dave\n  password_hash: nope\n  shoe_size: 44\n")
	_, err = Load(path)
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("Load: %v, want Problems", err)
	}
	users := filepath.Join(dir, "users.yaml")
	want := users + `:1: upstream.local.users_file[0].username: duplicate username "alice" (also upstream.local.users[0])
` + users + `:4: upstream.local.users_file[1].password_hash: not a bcrypt hash: expected 60 characters like "$2a$10$…" (make one with ` + "`printf %s 'secret' | cibaproxy hash-secret`" + `)
` + users + `:5: upstream.local.users_file[1].shoe_size: unknown key "shoe_size"; the keys here are approval_method, claims, password_hash, subject, user_code_hash, username`
	if ps.Error() != want {
		t.Errorf("got:\n%s\nwant:\n%s", ps.Error(), want)
	}

	write(t, filepath.Join(dir, "users.yaml"), "username: alice\n")
	_, err = Load(path)
	if !errors.As(err, &ps) || len(ps) != 1 || ps[0].File != users || !strings.Contains(ps[0].Message, "expected a list") {
		t.Errorf("got %v, want the users file to be a list", err)
	}
}

func TestSigningKeyFile(t *testing.T) {
	dir := t.TempDir()
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sec1, err := x509.MarshalECPrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pemOf := func(typ string, b []byte) string { return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b})) }

	for _, tt := range []struct {
		name, content string
		kid           string
		msg           string // empty: valid
	}{
		{"SEC 1 EC key after EC PARAMETERS, as openssl ecparam writes it", pemOf("EC PARAMETERS", []byte{6, 8, 42, 134, 72, 206, 61, 3, 1, 7}) + pemOf("EC PRIVATE KEY", sec1), "", ""},
		{"PKCS#8 EC key", pemOf("PRIVATE KEY", pkcs8), "", ""},
		{"private JWK keeps its kid", demoPrivateJWK, "demo-poll-1", ""},
		{"a public JWK is refused", demoPublicJWK, "", "must be private"},
		{"a public PEM key is refused", pemOf("PUBLIC KEY", pub), "", "no PEM private key or JWK found"},
		{"RSA keys have at least 2048 bits", pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(small)), "", "has 1024 bits"},
		{"garbage is refused", "hello", "", "no PEM private key or JWK found"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			write(t, filepath.Join(dir, "key"), tt.content)
			data := doc(map[string]string{"tokens": "tokens:\n  signing_key_file: key"})
			c, err := parse([]byte(data), filepath.Join(dir, "c.yaml"), noEnv)
			if tt.msg == "" {
				if err != nil {
					t.Fatalf("parse: %v", err)
				}
				if c.Tokens.SigningKey == nil || c.Tokens.SigningKeyID != tt.kid || c.Tokens.SigningKeyFile != filepath.Join(dir, "key") {
					t.Errorf("signing key %T kid %q file %q", c.Tokens.SigningKey, c.Tokens.SigningKeyID, c.Tokens.SigningKeyFile)
				}
				return
			}
			var ps Problems
			if !errors.As(err, &ps) || len(ps) != 1 || ps[0].Path != "tokens.signing_key_file" || !strings.Contains(ps[0].Message, tt.msg) {
				t.Errorf("got %v, want a tokens.signing_key_file problem containing %q", err, tt.msg)
			}
		})
	}
}

func TestEncryptionKeyEncodings(t *testing.T) {
	// 32 bytes whose base64 uses '+' and '/' (std) or '-' and '_' (url).
	keys := []string{
		"+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/8=",
		"+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/8",
		"-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_8=",
		"-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_8",
	}
	var b strings.Builder
	b.WriteString("tokens:\n  encryption_keys:\n")
	for i, k := range keys {
		b.WriteString("    - id: k" + strconv.Itoa(i) + "\n      key: \"" + k + "\"\n")
	}
	c := mustParse(t, doc(map[string]string{"tokens": b.String()}), noEnv)
	for i, k := range c.Tokens.EncryptionKeys {
		if len(k.Secret) != 32 || string(k.Secret) != string(c.Tokens.EncryptionKeys[0].Secret) {
			t.Errorf("key %d decoded to %x", i, k.Secret)
		}
	}
}

func TestJWKSForms(t *testing.T) {
	poll := "client_id: c1\nclient_secret: s1\nbackchannel_token_delivery_mode: poll\n"
	asYAML := poll + "jwks:\n  keys:\n    - {kty: EC, crv: P-256, kid: k1, x: 1Uq-qWYl4XWcPCO8wkB59-EpdHLQEabd6B0_be8JP7g, y: OP4qyNXJFAMUXLA7DdxuNWY2hk4X8M0QuIzX4aucIRM}"
	asJSON := poll + "jwks: '{\"keys\":[" + demoPublicJWK + "]}'"
	for _, body := range []string{asYAML, asJSON} {
		c := mustParse(t, doc(map[string]string{"clients": clients(body + "\nbackchannel_authentication_request_signing_alg: ES256")}), noEnv)
		if !strings.HasPrefix(string(c.Clients[0].JWKS), `{"keys":[{`) {
			t.Errorf("jwks = %s, want JSON", c.Clients[0].JWKS)
		}
	}
}

// TestHS256WithOnlyPrivateKeyJWT documents the one exception to "no secret
// without a client_secret_* method": the HS256 legacy switch needs it (of
// at least 32 bytes, an HS256 key).
func TestHS256WithOnlyPrivateKeyJWT(t *testing.T) {
	mustParse(t, doc(map[string]string{"clients": clients(
		"client_id: c1\nclient_secret: 0123456789abcdef0123456789abcdef\nbackchannel_token_delivery_mode: poll\n" +
			"token_endpoint_auth_methods: [private_key_jwt]\njwks_uri: https://c.example.com/jwks\n" +
			"allow_hs256_request_object: true\nbackchannel_authentication_request_signing_alg: HS256")}), noEnv)
}

func TestAnchorsAndMergeKeys(t *testing.T) {
	data := doc(map[string]string{"clients": `x-defaults: &defaults
  client_secret: shared
  backchannel_token_delivery_mode: ping
  backchannel_client_notification_endpoint: https://c.example.com/cb
clients:
  - <<: *defaults
    client_id: a
  - <<: *defaults
    client_id: b
    backchannel_token_delivery_mode: poll
    backchannel_client_notification_endpoint: ""`})
	// x-defaults is not a known key: anchors must live inside known keys.
	ps := problemsOf(t, data, noEnv)
	if len(ps) != 1 || ps[0].Path != "x-defaults" {
		t.Fatalf("got %v, want only the unknown x-defaults key", ps)
	}

	data = doc(map[string]string{"clients": `clients:
  - &a
    client_id: a
    client_secret: shared
    backchannel_token_delivery_mode: ping
    backchannel_client_notification_endpoint: https://c.example.com/cb
  - <<: *a
    client_id: b
    scopes: &scopes [openid, email]
  - <<: [*a]
    client_id: c
    scopes: *scopes`})
	c := mustParse(t, data, noEnv)
	for i, id := range []string{"a", "b", "c"} {
		cl := c.Clients[i]
		if cl.ID != id || cl.Secret != "shared" || cl.DeliveryMode != "ping" {
			t.Errorf("client %d = %+v, want %s with the merged settings", i, cl, id)
		}
	}
	if len(c.Clients[2].Scopes) != 2 {
		t.Errorf("scopes alias not followed: %v", c.Clients[2].Scopes)
	}
}

func TestMergeCycle(t *testing.T) {
	ps := problemsOf(t, doc(map[string]string{"log": "log: &l\n  <<: *l"}), noEnv)
	if len(ps) != 1 || ps[0].Path != "log" || !strings.Contains(ps[0].Message, "includes the mapping it is in") {
		t.Errorf("got %v, want the self-including merge reported", ps)
	}
}

// TestAliasBomb checks that a "billion laughs" document, here merge keys
// that each pull in ten copies of the previous mapping, is refused quickly
// instead of exhausting time and memory.
func TestAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("log:\n  m0: &m0 {level: info}\n")
	for i := 1; i < 40; i++ {
		b.WriteString("  m" + strconv.Itoa(i) + ": &m" + strconv.Itoa(i) + " {<<: [")
		for j := range 10 {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString("*m" + strconv.Itoa(i-1))
		}
		b.WriteString("]}\n")
	}
	b.WriteString("store: {<<: *m39}\n")
	start := time.Now()
	ps := problemsOf(t, b.String(), noEnv)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
	if !strings.Contains(ps.Error(), "too many aliases") {
		t.Errorf("got %v, want the alias expansion refused", ps)
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
