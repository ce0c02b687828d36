package clientauth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"
)

// fuzzChain returns a leaf certificate and the CA that issued it, as nginx
// forwards them.
func fuzzChain(tb testing.TB) (leaf, ca *x509.Certificate) {
	tb.Helper()
	mk := func(cn string, isCA bool, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			tb.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			IsCA: isCA, BasicConstraintsValid: isCA,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}
		if parent == nil {
			parent, parentKey = tmpl, key
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
		if err != nil {
			tb.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			tb.Fatal(err)
		}
		return c, key
	}
	ca, caKey := mk("ca", true, nil, nil)
	leaf, _ = mk("client", false, ca, caKey)
	return leaf, ca
}

// FuzzParseForwarded: the parser of the client certificate a trusted
// TLS-terminating proxy forwards (nginx's $ssl_client_escaped_cert) never
// panics; a value over maxForwardedCert bytes is refused; and what it
// accepts is a certificate chain: at least one certificate, each one the
// parse of one CERTIFICATE block of the value, in order.
func FuzzParseForwarded(f *testing.F) {
	leaf, ca := fuzzChain(f)
	leafPEM, caPEM := pemOf(leaf), pemOf(ca)
	for _, s := range []string{
		url.PathEscape(leafPEM),         // nginx $ssl_client_escaped_cert
		url.PathEscape(leafPEM + caPEM), // with an intermediate
		url.QueryEscape(leafPEM),        // '+' for spaces: not decoded by PathUnescape
		leafPEM,                         // not escaped (a header cannot carry the newlines, but a proxy may fold them)
		strings.ReplaceAll(leafPEM, "\n", "%0A"),
		url.PathEscape(leafPEM) + "%0Atrailing",
		url.PathEscape("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
		url.PathEscape("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
		"%zz", "", "-----BEGIN CERTIFICATE-----",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		certs, err := parseForwarded(v)
		if len(v) > maxForwardedCert && err == nil {
			t.Fatalf("accepted a value of %d bytes, over the bound of %d", len(v), maxForwardedCert)
		}
		if err != nil {
			if certs != nil {
				t.Fatalf("an error (%v) with certificates", err)
			}
			return
		}
		if len(certs) == 0 {
			t.Fatal("accepted a value without a certificate")
		}
		raw, _ := url.PathUnescape(v)
		rest := []byte(raw)
		for i, c := range certs {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil || b.Type != "CERTIFICATE" || c == nil || string(c.Raw) != string(b.Bytes) {
				t.Fatalf("certificate %d is not the parse of the value's block %d", i, i)
			}
			if _, err := x509.ParseCertificate(c.Raw); err != nil {
				t.Fatalf("certificate %d does not parse again: %v", i, err)
			}
		}
	})
}

// TestParseForwardedSizeBound: a chain just within maxForwardedCert is
// accepted and one byte more is refused, whatever it holds.
func TestParseForwardedSizeBound(t *testing.T) {
	leaf, _ := fuzzChain(t)
	v := url.PathEscape(pemOf(leaf))
	// Trailing whitespace is allowed after the last block: pad to the bound.
	v += strings.Repeat("%20", (maxForwardedCert-len(v))/3)
	v += strings.Repeat(" ", maxForwardedCert-len(v))
	if len(v) != maxForwardedCert {
		t.Fatalf("test value of %d bytes, want %d", len(v), maxForwardedCert)
	}
	if _, err := parseForwarded(v); err != nil {
		t.Fatalf("a value of exactly %d bytes: %v", maxForwardedCert, err)
	}
	if _, err := parseForwarded(v + " "); err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Fatalf("a value of %d bytes: err = %v, want longer than the bound", maxForwardedCert+1, err)
	}
}
