package clientauth

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"

	gojose "github.com/go-jose/go-jose/v4"

	"github.com/cibaproxy/cibaproxy/internal/clientmeta"
)

// Mutual-TLS client authentication methods (RFC 8705 §2).
const (
	MethodTLSClientAuth           = clientmeta.MethodTLSClientAuth
	MethodSelfSignedTLSClientAuth = clientmeta.MethodSelfSignedTLSClientAuth
)

// MTLS says where the client certificate of a request comes from, and
// which CAs issue the certificates of tls_client_auth clients. Set it on
// the Registry before the first Authenticate.
type MTLS struct {
	// ClientCAs are the roots a tls_client_auth certificate must chain to
	// (RFC 8705 §2.1), with the client-authentication extended key usage.
	// Nil: no tls_client_auth certificate is accepted. The TLS listener
	// only requests certificates and verifies none, so that
	// self-signed ones reach self_signed_tls_client_auth; the chain is
	// checked here, for certificates from TLS and from the proxy alike.
	ClientCAs *x509.CertPool

	// ProxyHeader is the header in which a TLS-terminating proxy forwards
	// the client certificate: PEM, URL-encoded (nginx's
	// $ssl_client_escaped_cert), leaf first, then any intermediates.
	// Believed only from TrustedProxies; empty: never.
	ProxyHeader string

	// TrustedProxies are the networks of the proxies whose ProxyHeader is
	// believed, matched against the TCP peer address (r.RemoteAddr).
	TrustedProxies []netip.Prefix
}

// TLSClientAuth is the registration of a tls_client_auth client (RFC 8705
// §2.1.2): exactly one of the fields is set, and the client's certificate
// must carry that subject name.
type TLSClientAuth struct {
	// SubjectDN is tls_client_auth_subject_dn, compared with the
	// certificate's subject in the RFC 4514 string form Go prints
	// (pkix.Name.String), e.g. "CN=client,O=Example".
	SubjectDN string
	// SANDNS is tls_client_auth_san_dns: a dNSName SAN (compared without
	// regard to case).
	SANDNS string
	// SANURI is tls_client_auth_san_uri: a uniformResourceIdentifier SAN.
	SANURI string
	// SANEmail is tls_client_auth_san_email: an rfc822Name SAN.
	SANEmail string
}

// matches reports whether cert carries the registered name.
func (t TLSClientAuth) matches(cert *x509.Certificate) bool {
	switch {
	case t.SubjectDN != "":
		return cert.Subject.String() == t.SubjectDN
	case t.SANDNS != "":
		return slices.ContainsFunc(cert.DNSNames, func(s string) bool { return strings.EqualFold(s, t.SANDNS) })
	case t.SANURI != "":
		return slices.ContainsFunc(cert.URIs, func(u *url.URL) bool { return u.String() == t.SANURI })
	case t.SANEmail != "":
		return slices.Contains(cert.EmailAddresses, t.SANEmail)
	}
	return false
}

// CertThumbprint is the x5t#S256 of cert: the base64url SHA-256 of its DER
// encoding, the value of the cnf claim of a certificate-bound access token
// (RFC 8705 §3.1).
func CertThumbprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// ClientCertificate returns the client certificate of req and the
// intermediates sent with it: the one presented on TLS, or else the one a
// trusted proxy forwarded in m.ProxyHeader. A header from any other
// address is ignored. It returns nil and no error when there is no
// certificate; an error (invalid_client) when a trusted proxy forwarded a
// malformed one.
func (m *MTLS) ClientCertificate(req *http.Request) (*x509.Certificate, []*x509.Certificate, error) {
	if req.TLS != nil && len(req.TLS.PeerCertificates) > 0 {
		return req.TLS.PeerCertificates[0], req.TLS.PeerCertificates[1:], nil
	}
	if m.ProxyHeader == "" || !m.fromTrustedProxy(req) {
		return nil, nil, nil
	}
	vals := req.Header.Values(m.ProxyHeader)
	switch {
	case len(vals) == 0 || vals[0] == "":
		return nil, nil, nil
	case len(vals) > 1:
		return nil, nil, invalidClient(false, "the %s header is repeated", m.ProxyHeader)
	}
	certs, err := parseForwarded(vals[0])
	if err != nil {
		return nil, nil, invalidClient(false, "the client certificate in %s is malformed: %v", m.ProxyHeader, err)
	}
	return certs[0], certs[1:], nil
}

// fromTrustedProxy reports whether the TCP peer of req is a trusted proxy.
func (m *MTLS) fromTrustedProxy(req *http.Request) bool {
	ap, err := netip.ParseAddrPort(req.RemoteAddr)
	if err != nil {
		return false
	}
	addr := ap.Addr().Unmap()
	return slices.ContainsFunc(m.TrustedProxies, func(p netip.Prefix) bool { return p.Contains(addr) })
}

// maxForwardedCert bounds the forwarded certificate chain.
const maxForwardedCert = 32 << 10

// parseForwarded decodes a URL-encoded PEM chain, leaf first.
func parseForwarded(v string) ([]*x509.Certificate, error) {
	if len(v) > maxForwardedCert {
		return nil, fmt.Errorf("longer than %d bytes", maxForwardedCert)
	}
	raw, err := url.PathUnescape(v)
	if err != nil {
		return nil, fmt.Errorf("URL encoding: %w", err)
	}
	var certs []*x509.Certificate
	rest := []byte(raw)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %q, want CERTIFICATE", b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate: %w", err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate")
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, errors.New("trailing data after the PEM certificates")
	}
	return certs, nil
}

// mtlsAuth authenticates the client named by the form's client_id by the
// certificate of the request (RFC 8705 §2): tls_client_auth when the
// certificate chains to MTLS.ClientCAs and carries the registered subject
// name; self_signed_tls_client_auth when it is one of the certificates (or
// carries one of the public keys) of the client's jwks. An unknown client
// and a client without a mutual-TLS method get the same description, so
// failures do not tell which client_ids exist. ctx bounds a fetch of the
// client's jwks_uri.
func (r *Registry) mtlsAuth(ctx context.Context, form url.Values, cert *x509.Certificate, intermediates []*x509.Certificate) (*Registration, error) {
	id := form.Get("client_id")
	if id == "" {
		return nil, invalidClient(false, "client_id is required with a client certificate (RFC 8705 §2)")
	}
	reg := r.byID[id]
	if reg == nil || (!reg.Allows(MethodTLSClientAuth) && !reg.Allows(MethodSelfSignedTLSClientAuth)) {
		return nil, invalidClient(false, genericFailure)
	}
	var why []string
	if reg.Allows(MethodTLSClientAuth) {
		switch err := r.MTLS.verifyChain(cert, intermediates); {
		case err != nil:
			why = append(why, fmt.Sprintf("%s: %v", MethodTLSClientAuth, err))
		case !reg.tlsAuth.matches(cert):
			why = append(why, MethodTLSClientAuth+": the certificate does not carry the registered subject name")
		default:
			return reg, nil
		}
	}
	if reg.Allows(MethodSelfSignedTLSClientAuth) {
		switch ok, err := reg.selfSignedAuth(ctx, cert); {
		case ok:
			return reg, nil
		case err != nil:
			why = append(why, MethodSelfSignedTLSClientAuth+": the keys at the client's jwks_uri could not be fetched")
		case reg.certURI != nil:
			why = append(why, MethodSelfSignedTLSClientAuth+": the certificate is not one published at the client's jwks_uri")
		default:
			why = append(why, MethodSelfSignedTLSClientAuth+": the certificate is not one registered in the client's jwks")
		}
	}
	return nil, invalidClient(false, "client certificate refused: %s", strings.Join(why, "; "))
}

// selfSignedAuth reports whether cert is registered for reg (RFC 8705
// §2.2): in its jwks, or among the keys at its jwks_uri. Those keys are
// cached; when the certificate matches none of them they are fetched
// again once (the client may have rotated its certificate), within the
// fetch limits of jose.RemoteKeySet (one fetch per 5 s per jwks_uri), so
// certificates that match nothing cannot make cibaproxy fetch more often.
func (reg *Registration) selfSignedAuth(ctx context.Context, cert *x509.Certificate) (bool, error) {
	if reg.certURI == nil {
		return selfSignedMatch(reg.certKeys, cert), nil
	}
	if keys, err := reg.certURI.Keys(ctx, false); err == nil && selfSignedMatch(keys, cert) {
		return true, nil
	}
	keys, err := reg.certURI.Keys(ctx, true)
	if err != nil {
		return false, err
	}
	return selfSignedMatch(keys, cert), nil
}

// verifyChain checks that cert chains to the client CAs for client
// authentication.
func (m *MTLS) verifyChain(cert *x509.Certificate, intermediates []*x509.Certificate) error {
	if m.ClientCAs == nil {
		return errors.New("no client CA is configured")
	}
	pool := x509.NewCertPool()
	for _, c := range intermediates {
		pool.AddCert(c)
	}
	_, err := cert.Verify(x509.VerifyOptions{Roots: m.ClientCAs, Intermediates: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		return errors.New("the certificate does not chain to a trusted client CA, or is expired")
	}
	return nil
}

// selfSignedMatch reports whether cert is registered in keys (RFC 8705
// §2.2): the first certificate of a key's x5c, or, for a key without x5c,
// a certificate with the key's public key. The certificate's validity
// period is not checked: the registration is what is trusted.
func selfSignedMatch(keys []gojose.JSONWebKey, cert *x509.Certificate) bool {
	for _, k := range keys {
		if len(k.Certificates) > 0 {
			if bytes.Equal(k.Certificates[0].Raw, cert.Raw) {
				return true
			}
			continue
		}
		if pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); ok && pub.Equal(k.Key) {
			return true
		}
	}
	return false
}
