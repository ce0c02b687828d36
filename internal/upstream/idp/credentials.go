package idp

import (
	"errors"
	"fmt"
)

// Client authentication methods at the IdP's token and backchannel
// authentication endpoints (RFC 6749 §2.3.1): a client secret, sent one way
// or the other.
const (
	// AuthMethodBasic sends the credentials in an HTTP Basic header; the
	// default.
	AuthMethodBasic = "client_secret_basic"
	// AuthMethodPost sends them as the form parameters client_id and
	// client_secret.
	AuthMethodPost = "client_secret_post"
)

// Credentials are one cibaproxy client's credentials at the IdP: each
// upstream request is made in the client's own name, so that the IdP's
// tokens are issued to it.
type Credentials struct {
	// ClientID is the client's client_id at the IdP.
	ClientID string
	// ClientSecret is its secret there. Secret: never logged.
	ClientSecret string
	// AuthMethod is AuthMethodBasic (default, when empty) or AuthMethodPost.
	AuthMethod string
}

// Check reports what is wrong with c: a missing client_id or secret, or an
// authentication method other than those above.
func (c Credentials) Check() error {
	if c.ClientID == "" || c.ClientSecret == "" {
		return errors.New("the client_id and client_secret at the identity provider are required")
	}
	switch c.AuthMethod {
	case "", AuthMethodBasic, AuthMethodPost:
		return nil
	default:
		return fmt.Errorf("auth method %q is not supported (%s or %s)", c.AuthMethod, AuthMethodBasic, AuthMethodPost)
	}
}

// CheckClients checks the credentials at the IdP of the cibaproxy clients
// by their client_id: at least one client, and each one's credentials as
// Check does. C is Credentials, or an upstream's own type that embeds it.
// The error starts with prefix (the upstream's package name) and names the
// client.
func CheckClients[C interface{ Check() error }](prefix string, clients map[string]C) error {
	if len(clients) == 0 {
		return fmt.Errorf("%s: no client has credentials at the identity provider", prefix)
	}
	for id, c := range clients {
		if err := c.Check(); err != nil {
			return fmt.Errorf("%s: client %q: %w", prefix, id, err)
		}
	}
	return nil
}
