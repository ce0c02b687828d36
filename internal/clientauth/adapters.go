package clientauth

import (
	"context"
	"net/http"
	"net/url"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/jose"
)

// Authenticator is a Registry in the shape the HTTP layer asks for
// (httpapi.Authenticator): it authenticates clients and verifies their
// signed authentication requests.
type Authenticator struct {
	// Registry holds the clients: a *Registry, or a *Live to reload them.
	Registry Source
	// RequestObjects is the template of the request object checks: Issuer,
	// Audiences, Replay, Now, ClockSkew, MaxSize, MaxLifetime. The
	// client's fields are filled from its registration.
	RequestObjects jose.RequestObjectPolicy
}

// Authenticate authenticates the client of req (see Registry.Authenticate).
func (a *Authenticator) Authenticate(ctx context.Context, req *http.Request, form url.Values, endpoint string) (*ciba.Client, error) {
	reg, err := a.Registry.Current().Authenticate(ctx, req, form, endpoint)
	if err != nil {
		return nil, err
	}
	return reg.Client(), nil
}

// CertThumbprint returns the x5t#S256 (RFC 8705 §3.1) of the client
// certificate of req — presented on TLS, or forwarded by a trusted proxy
// (see MTLS.ClientCertificate) — or "" when there is none. It is what a
// certificate-bound access token is bound to; the certificate need not be
// the one the client authenticated with (RFC 8705 §3). A malformed
// forwarded certificate is invalid_client.
func (a *Authenticator) CertThumbprint(req *http.Request) (string, error) {
	r := a.Registry.Current()
	cert, _, err := r.MTLS.ClientCertificate(req)
	if err != nil || cert == nil {
		return "", err
	}
	return CertThumbprint(cert), nil
}

// RequestObject verifies a signed authentication request of client c
// (CIBA §7.1.1, jose.VerifyRequestObject) and returns its claims. A
// request object that fails is invalid_request (see tokenError).
func (a *Authenticator) RequestObject(ctx context.Context, c *ciba.Client, raw string) (map[string]any, error) {
	reg, ok := a.Registry.Current().Lookup(c.ID)
	if !ok {
		return nil, ciba.Errorf(ciba.CodeInvalidClient, "client %q is not registered", c.ID)
	}
	claims, err := jose.VerifyRequestObject(ctx, raw, reg.RequestObjectPolicy(a.RequestObjects))
	if err != nil {
		return nil, tokenError(err)
	}
	return claims, nil
}

// RequiresSignedRequest reports whether c must send signed requests.
func (a *Authenticator) RequiresSignedRequest(c *ciba.Client) bool {
	reg, ok := a.Registry.Current().Lookup(c.ID)
	return ok && reg.RequiresSignedRequest()
}

// Hints verifies the signed user hints of CIBA §7.1 for the clients of a
// Registry, in the shape the local upstream asks for
// (local.HintVerifier).
type Hints struct {
	// Registry holds the clients; a login_hint_token may be signed by the
	// requesting client's own keys. A *Registry, or a *Live to reload
	// them.
	Registry Source
	// IDTokens is the template of the id_token_hint checks: Issuer, KeySet
	// (the issuer's keys, e.g. keys.Manager.KeySet), Algs, MaxSize.
	IDTokens jose.IDTokenHintPolicy
	// LoginHintTokens is the template of the login_hint_token checks:
	// TrustedIssuers, Issuer, Algs, Now, ClockSkew, MaxSize.
	LoginHintTokens jose.HintTokenPolicy
}

// IDTokenHint verifies an id_token_hint the issuer gave clientID and
// returns its subject. A hint that fails is invalid_request (see
// tokenError).
func (h *Hints) IDTokenHint(ctx context.Context, raw, clientID string) (string, error) {
	p := h.IDTokens
	p.ClientID = clientID
	claims, err := jose.VerifyIDTokenHint(ctx, raw, p)
	if err != nil {
		return "", tokenError(err)
	}
	sub, _ := claims["sub"].(string)
	return sub, nil
}

// LoginHintToken verifies a login_hint_token sent by clientID and returns
// the kind (jose.HintSub, HintEmail, HintPhoneNumber, HintOpaque) and value
// of the user it names. An iss_sub identifier is returned as a sub when
// its issuer is the issuer of IDTokens or LoginHintTokens (the subjects
// this deployment knows), else it is unknown_user_id. An expired token is
// expired_login_hint_token, any other that fails invalid_request (see
// tokenError).
func (h *Hints) LoginHintToken(ctx context.Context, raw, clientID string) (kind, value string, err error) {
	p := h.LoginHintTokens
	p.ClientID = clientID
	p.ClientKeys = nil
	if reg, ok := h.Registry.Current().Lookup(clientID); ok {
		p.ClientKeys = reg.KeySet()
	}
	claims, err := jose.VerifyLoginHintToken(ctx, raw, p)
	if err != nil {
		return "", "", tokenError(err)
	}
	s, err := jose.HintSubjectID(claims)
	if err != nil {
		return "", "", tokenError(err)
	}
	if s.Kind == jose.HintIssSub {
		if s.Issuer == "" || (s.Issuer != h.IDTokens.Issuer && s.Issuer != h.LoginHintTokens.Issuer) {
			return "", "", ciba.Errorf(ciba.CodeUnknownUserID, "login_hint_token: the subject's issuer is not one this server knows users of")
		}
		return jose.HintSub, s.Value, nil
	}
	return s.Kind, s.Value, nil
}
