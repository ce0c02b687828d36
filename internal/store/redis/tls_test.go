package redisstore

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/store/redis/redistest"
)

// testPKI writes a CA, a server certificate for 127.0.0.1 and a client
// certificate into dir and returns their file names.
type testPKI struct{ ca, serverCert, serverKey, clientCert, clientKey string }

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	now := time.Now()
	caKey := newKey()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	leaf := func(serial int64, name string, usages []x509.ExtKeyUsage) (cert, key string) {
		k := newKey()
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: usages,
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return write(name+".crt", "CERTIFICATE", der), write(name+".key", "EC PRIVATE KEY", kder)
	}
	p := testPKI{ca: write("ca.crt", "CERTIFICATE", caDER)}
	p.serverCert, p.serverKey = leaf(2, "server", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth})
	p.clientCert, p.clientKey = leaf(3, "client", []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth})
	return p
}

func TestTLS(t *testing.T) {
	pki := newTestPKI(t)
	srv := redistest.Start(t, redistest.WithTLS(pki.serverCert, pki.serverKey, pki.ca))
	ctx := t.Context()

	withCert, err := LoadTLS(pki.ca, pki.clientCert, pki.clientKey, "")
	if err != nil {
		t.Fatalf("LoadTLS: %v", err)
	}
	s, err := Open(ctx, Config{Addrs: []string{srv.Addr()}, TLS: withCert, KeyPrefix: newPrefix()})
	if err != nil {
		t.Fatalf("Open over TLS with a client certificate: %v", err)
	}
	defer func() { _ = s.Close() }()
	if err := s.PutRecord(ctx, "jti", "a", []byte("one"), time.Minute); err != nil {
		t.Fatalf("PutRecord over TLS: %v", err)
	}

	withoutCert, err := LoadTLS(pki.ca, "", "", "")
	if err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]Config{
		"without TLS":                {},
		"without client certificate": {TLS: withoutCert},
	} {
		cfg.Addrs, cfg.Timeout = []string{srv.Addr()}, 2*time.Second
		if s, err := Open(ctx, cfg); err == nil {
			_ = s.Close()
			t.Errorf("Open %s succeeded against a server that requires one", name)
		}
	}
}

func TestLoadTLSRefusesBadFiles(t *testing.T) {
	pki := newTestPKI(t)
	for name, files := range map[string][3]string{
		"a missing CA file":               {filepath.Join(t.TempDir(), "none.crt"), "", ""},
		"a CA file without a certificate": {pki.clientKey, "", ""},
		"a certificate without its key":   {"", pki.clientCert, ""},
		"a key without its certificate":   {"", "", pki.clientKey},
		"a key that does not match":       {"", pki.clientCert, pki.serverKey},
	} {
		if _, err := LoadTLS(files[0], files[1], files[2], ""); err == nil {
			t.Errorf("LoadTLS with %s succeeded", name)
		}
	}
}
