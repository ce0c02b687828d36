package main

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/config"
)

// Reloading the server certificate without a restart. The TLS listener
// takes its certificate from a serverCert (tls.Config.GetCertificate); on
// SIGHUP, once the configuration file has been read and validated
// (config.Load loads tls.cert_file and tls.key_file as a pair), the new
// certificate replaces the one in force: connections made afterwards get
// it, open connections keep theirs. A pair that does not load makes the
// whole configuration invalid, so the certificate in force stays and the
// log names the problem; an expired certificate is refused the same way.
// The client CAs (tls.client_ca_file) are read by the same config.Load and
// put in force with the clients (app.App.ReloadClients). Turning tls on or off needs
// a restart.

// serverCert is the server certificate in force.
type serverCert struct {
	cur atomic.Pointer[tls.Certificate]
	now func() time.Time
}

// newServerCert returns a serverCert holding c.
func newServerCert(c *tls.Certificate) *serverCert {
	s := &serverCert{now: time.Now}
	s.cur.Store(c)
	return s
}

// getCertificate is the tls.Config.GetCertificate of the listener.
func (s *serverCert) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.cur.Load(), nil
}

// reload puts in force the certificate of next, the tls section of a
// configuration config.Load has validated (its files may be other ones
// than at start). It returns whether the certificate changed, and an
// error (the certificate in force kept) when next's cannot be used.
func (s *serverCert) reload(next *config.TLS) (bool, error) {
	if !next.Enabled() {
		return false, errors.New("tls.cert_file is no longer set: restart to serve plain HTTP")
	}
	c := next.Certificate
	if c == nil || len(c.Certificate) == 0 {
		return false, errors.New("tls: no certificate was loaded") // unreachable after config.Load
	}
	leaf := c.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return false, fmt.Errorf("%s: %w", next.CertFile, err)
		}
	}
	if now := s.now(); now.After(leaf.NotAfter) || now.Before(leaf.NotBefore) {
		return false, fmt.Errorf("%s: the certificate is valid from %s to %s, not now", next.CertFile,
			leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if old := s.cur.Load(); old != nil && len(old.Certificate) > 0 && bytes.Equal(old.Certificate[0], c.Certificate[0]) {
		return false, nil
	}
	s.cur.Store(c)
	return true, nil
}

// certAttrs describe a certificate for the log: subject, expiry and
// SHA-256 fingerprint, nothing secret.
func certAttrs(c *tls.Certificate) []any {
	if c == nil || len(c.Certificate) == 0 {
		return nil
	}
	sum := sha256.Sum256(c.Certificate[0])
	attrs := []any{slog.String("sha256", hex.EncodeToString(sum[:]))}
	if leaf, err := x509.ParseCertificate(c.Certificate[0]); err == nil {
		attrs = append(attrs, slog.String("subject", leaf.Subject.String()), slog.Time("not_after", leaf.NotAfter))
	}
	return attrs
}
