package ciba

// Binding is the key a token response is bound to (sender-constrained
// tokens): the client certificate (RFC 8705 §3) or the DPoP key (RFC 9449
// §6) the client proved it holds with the token request. The zero value is
// unbound.
type Binding struct {
	// Cert is the x5t#S256 of the client certificate (RFC 8705 §3.1); ""
	// for none.
	Cert string
	// JKT is the JWK SHA-256 thumbprint of the DPoP proof's key (RFC 9449
	// §6.1); "" when the request carried no proof.
	JKT string
	// PublicClient is set when the client did not authenticate (a public
	// client): its refresh tokens are bound to the DPoP key as well, since
	// no client authentication protects them (RFC 9449 §5).
	PublicClient bool
}
