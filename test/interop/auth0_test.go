package interop

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// agentDetails is what the agent asks the user to approve: two details,
// as Auth0's agent SDKs send them.
const agentDetails = `[{"type":"payment_initiation","actions":["initiate"],"instructedAmount":{"amount":"50.00","currency":"EUR"},"creditorName":"ACME"},` +
	`{"type":"payment_initiation","actions":["initiate"],"instructedAmount":{"amount":"5.00","currency":"EUR"},"creditorName":"ACME fees"}]`

// agentAudience is the API the agent's access token is for.
const agentAudience = "https://api.example.test/"

// paymentSchema is the schema of payment_initiation details.
const paymentSchema = `{"type":"object","required":["type","instructedAmount","creditorName"],"properties":{
 "instructedAmount":{"type":"object","required":["amount","currency"],
  "properties":{"amount":{"type":"string"},"currency":{"type":"string","pattern":"^[A-Z]{3}$"}}},
 "creditorName":{"type":"string"}}}`

// auth0Result is the JSON line auth0.mjs prints.
type auth0Result struct {
	OK                   bool            `json:"ok"`
	TokenType            string          `json:"token_type"`
	AccessToken          string          `json:"access_token"`
	IDToken              string          `json:"id_token"`
	AuthorizationDetails json.RawMessage `json:"authorization_details"`
	AccessClaims         map[string]any  `json:"access_claims"`
	Error                string          `json:"error"`
	ErrorDescription     string          `json:"error_description"`
	Status               int             `json:"status"`
}

// testCA makes a CA and a 127.0.0.1 server certificate it signed, and
// writes the CA's certificate and the server's certificate and key as PEM
// files in dir.
func testCA(t *testing.T, dir string) (caFile, certFile, keyFile string, roots *x509.CertPool) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "cibaproxy interop test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	caFile, certFile, keyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem")
	for file, block := range map[string]*pem.Block{caFile: {Type: "CERTIFICATE", Bytes: caDER}, certFile: {Type: "CERTIFICATE", Bytes: der},
		keyFile: {Type: "EC PRIVATE KEY", Bytes: keyDER}} {
		if err := os.WriteFile(file, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	roots = x509.NewCertPool()
	roots.AddCert(ca)
	return caFile, certFile, keyFile, roots
}

// assertionKey makes the RSA key of the private_key_jwt agent: its private
// key as PKCS #8 PEM, as the auth0 package takes it, and its public key as
// a JWKS in JSON (which YAML reads as it is).
func assertionKey(t *testing.T) (privatePEM, jwks string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	pub, err := json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "RSA", "kid": "agent-jwt-1", "alg": "RS256", "use": "sig",
		"n": b64(key.N.Bytes()), "e": b64(big.NewInt(int64(key.E)).Bytes()),
	}}})
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), string(pub)
}

// auth0Config writes the quick start configuration with HTTPS, the token
// alias Auth0-style clients post to, payment_initiation details, one agent
// client allowed agentAudience, and the same with private_key_jwt and the
// public keys jwks.
func auth0Config(t *testing.T, dir, certFile, keyFile, jwks string) string {
	t.Helper()
	base, err := os.ReadFile(testutil.QuickstartConfig())
	if err != nil {
		t.Fatal(err)
	}
	head, _, ok := strings.Cut(string(base), "\nclients:\n")
	if !ok {
		t.Fatal("quickstart.yaml has no clients: section")
	}
	schema := filepath.Join(dir, "payment_initiation.json")
	if err := os.WriteFile(schema, []byte(paymentSchema), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := head + `
tls:
  cert_file: ` + certFile + `
  key_file: ` + keyFile + `
http:
  token_aliases: [/oauth/token]
authorization_details:
  types:
    payment_initiation:
      schema_file: ` + schema + `
clients:
  - client_id: agent
    client_name: Payments agent
    client_secret: agent-secret-for-the-interop-test-only
    token_endpoint_auth_methods: [client_secret_post]
    backchannel_token_delivery_mode: poll
    authorization_details_types: [payment_initiation]
    resources: [` + agentAudience + `]
  - client_id: agent-jwt
    client_name: Payments agent with keys
    token_endpoint_auth_methods: [private_key_jwt]
    jwks: ` + jwks + `
    backchannel_token_delivery_mode: poll
    authorization_details_types: [payment_initiation]
    resources: [` + agentAudience + `]
`
	path := filepath.Join(dir, "auth0.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestAuth0Clients runs Auth0's own client packages against cibaproxy over
// HTTPS with only the domain changed: the npm package auth0
// (AuthenticationClient backchannel.authorize and backchannelGrant) and
// @auth0/ai's asynchronous authorization. Each sends an iss_sub login_hint,
// two authorization_details as a JSON string, an audience and
// requested_expiry as a string, polls /oauth/token, and gets tokens whose
// authorization_details are exactly those sent and whose access token is
// for the audience (and the issuer, whose userinfo takes it). An audience the client may not ask for is refused
// with invalid_target, as the package reports it. With private_key_jwt
// ("jwt"), the auth0 package's assertions, whose aud is the issuer with a
// trailing slash, authenticate the client at bc-authorize and /oauth/token.
func TestAuth0Clients(t *testing.T) {
	t.Parallel()
	requireNode(t)
	installDeps(t)

	dir := t.TempDir()
	caFile, certFile, keyFile, roots := testCA(t, dir)
	privatePEM, jwks := assertionKey(t)
	hook := testutil.NewWebhook(t)
	srv := testutil.Start(t, testutil.Options{
		Binary: binary, Config: auth0Config(t, dir, certFile, keyFile, jwks), WebhookURL: hook.URL,
		TLS: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
	})
	domain := strings.TrimPrefix(srv.URL, "https://")
	https := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil, TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}
	t.Cleanup(https.CloseIdleConnections)

	run := func(t *testing.T, mode, audience string, approve bool) auth0Result {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		client, secret := "agent", "agent-secret-for-the-interop-test-only"
		if mode == "jwt" {
			client, secret = "agent-jwt", "-"
		}
		cmd := exec.CommandContext(ctx, "node", "auth0.mjs", mode, domain, client, secret, "alice", agentDetails, audience)
		cmd.Env = append(os.Environ(), "NODE_EXTRA_CA_CERTS="+caFile, "CLIENT_ASSERTION_KEY="+privatePEM)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if approve {
			// The user approves on the approval device: the webhook's
			// message is answered through its callback, over HTTPS.
			m, err := hook.WaitBinding(ctx, "Pay 50 EUR to ACME ("+mode+")")
			if err != nil {
				_ = cmd.Process.Kill()
				t.Fatalf("no webhook message: %v\nstderr:\n%s", err, stderr.String())
			}
			body := strings.NewReader(`{"status":"approved"}`)
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, m.CallbackURL, body)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+m.Token)
			resp, err := https.Do(req)
			if err != nil || resp.StatusCode != http.StatusNoContent {
				t.Fatalf("approval callback: %v %v", resp, err)
			}
			resp.Body.Close()
		}
		runErr := cmd.Wait()
		lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
		var r auth0Result
		if err := json.Unmarshal([]byte(lines[len(lines)-1]), &r); err != nil || !r.OK || runErr != nil {
			t.Fatalf("node auth0.mjs %s: %v / %v\nstdout:\n%s\nstderr:\n%s", mode, err, runErr, stdout.String(), stderr.String())
		}
		return r
	}

	for _, mode := range []string{"backchannel", "ai", "jwt"} {
		t.Run(mode, func(t *testing.T) {
			r := run(t, mode, agentAudience, true)
			if !strings.EqualFold(r.TokenType, "bearer") || r.AccessToken == "" || r.IDToken == "" {
				t.Fatalf("tokens: type %q, access token %v, ID token %v", r.TokenType, r.AccessToken != "", r.IDToken != "")
			}
			if !sameJSON(r.AuthorizationDetails, agentDetails) {
				t.Errorf("token response authorization_details = %s; want those sent, %s", r.AuthorizationDetails, agentDetails)
			}
			atDetails, _ := json.Marshal(r.AccessClaims["authorization_details"])
			if !sameJSON(atDetails, agentDetails) {
				t.Errorf("access token authorization_details = %s; want those sent", atDetails)
			}
			if aud, _ := json.Marshal(r.AccessClaims["aud"]); string(aud) != `["`+agentAudience+`","`+srv.URL+`"]` ||
				r.AccessClaims["sub"] != "alice" || r.AccessClaims["iss"] != srv.URL {
				t.Errorf("access token aud %s, sub %v, iss %v; want [%s, the issuer], alice, %s", aud, r.AccessClaims["sub"], r.AccessClaims["iss"], agentAudience, srv.URL)
			}
		})
	}
	t.Run("an audience off the client's list", func(t *testing.T) {
		r := run(t, "refused", "https://other.example.test/", false)
		if r.Error != "invalid_target" || r.Status != http.StatusBadRequest || !strings.Contains(r.ErrorDescription, "other.example.test") {
			t.Errorf("refusal = %+v; want 400 invalid_target naming the audience", r)
		}
	})
}

// sameJSON reports whether got holds the same JSON value as want.
func sameJSON(got []byte, want string) bool {
	var a, b any
	if json.Unmarshal(got, &a) != nil || json.Unmarshal([]byte(want), &b) != nil {
		return false
	}
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}
