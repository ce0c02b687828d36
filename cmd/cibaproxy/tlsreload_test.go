package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/config"
)

// selfSigned returns a server certificate valid from notBefore to notAfter.
func selfSigned(t *testing.T, notBefore, notAfter time.Time) *tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: notBefore, NotAfter: notAfter, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestServerCertReload(t *testing.T) {
	now := time.Now()
	a := selfSigned(t, now.Add(-time.Hour), now.Add(time.Hour))
	b := selfSigned(t, now.Add(-time.Hour), now.Add(time.Hour))
	on := func(c *tls.Certificate) *config.TLS {
		return &config.TLS{CertFile: "server.pem", KeyFile: "server.key", Certificate: c}
	}
	s := newServerCert(a)
	in := func() *tls.Certificate { c, _ := s.getCertificate(nil); return c }

	if changed, err := s.reload(on(a)); err != nil || changed {
		t.Errorf("the same certificate: changed %v, err %v; want no change", changed, err)
	}
	if changed, err := s.reload(on(b)); err != nil || !changed || in() != b {
		t.Fatalf("a new certificate: changed %v, err %v; want it in force", changed, err)
	}
	for _, tt := range []struct {
		name string
		next *config.TLS
		msg  string
	}{
		{"an expired certificate is refused", on(selfSigned(t, now.Add(-2*time.Hour), now.Add(-time.Hour))), "not now"},
		{"a certificate not valid yet is refused", on(selfSigned(t, now.Add(time.Hour), now.Add(2*time.Hour))), "not now"},
		{"turning tls off needs a restart", &config.TLS{}, "restart"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			changed, err := s.reload(tt.next)
			if err == nil || changed || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("changed %v, err %v; want an error with %q", changed, err, tt.msg)
			}
			if in() != b {
				t.Errorf("the certificate in force changed")
			}
		})
	}
}
