package httpapi

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/dpop"
)

// Paths of the token services of the local issuer.
const (
	// PathIntrospect is the token introspection endpoint (RFC 7662).
	PathIntrospect = "/introspect"
	// PathRevoke is the token revocation endpoint (RFC 7009).
	PathRevoke = "/revoke"
	// PathUserinfo is the userinfo endpoint (OIDC Core §5.3).
	PathUserinfo = "/userinfo"
)

// TokenServices answers introspection, revocation and userinfo for the
// tokens of the local issuer (package local).
type TokenServices interface {
	// Introspect returns the claims of an active token with "active":
	// true, or nil for a token that is not active, for whatever reason;
	// an error only when it cannot tell (the store is down).
	Introspect(ctx context.Context, token, hint string, now time.Time) (map[string]any, error)
	// Revoke revokes token for client clientID: nil also for a token
	// that is unknown or no longer active, an error for another client's
	// token or a store failure.
	Revoke(ctx context.Context, clientID, token, hint string, now time.Time) error
	// UserInfo verifies access token token and returns the user's claims
	// released by its scopes and the token's cnf (its confirmation keys,
	// RFC 7800), which the caller checks; an invalid_token,
	// insufficient_scope or temporarily_unavailable error otherwise.
	UserInfo(ctx context.Context, token string, now time.Time) (claims map[string]any, cnf map[string]string, err error)
}

// registerTokens adds the token services' endpoints to mux.
func (s *Server) registerTokens(mux *http.ServeMux) {
	mux.HandleFunc("POST "+PathIntrospect, s.introspect)
	mux.HandleFunc("POST "+PathRevoke, s.revoke)
	mux.HandleFunc("GET "+PathUserinfo, s.userinfo)
	mux.HandleFunc("POST "+PathUserinfo, s.userinfo)
}

// errNoIntrospection refuses introspection to an authenticated client
// without the permission.
func errNoIntrospection(id string) error {
	return &ciba.Error{Code: ciba.CodeUnauthorizedClient, Status: http.StatusForbidden,
		Description: fmt.Sprintf("client %q may not introspect tokens (its configuration lacks introspection: true)", id)}
}

// introspect is POST /introspect (RFC 7662 §2): a client with the
// introspection permission asks whether a token is active. Every token
// that is not is answered {"active": false} alone, whatever the reason
// (RFC 7662 §2.2).
func (s *Server) introspect(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	form, client, ok := s.formClient(w, r, PathIntrospect)
	if !ok || !s.admitIntrospect(w, r, client) {
		return
	}
	if !client.Introspection {
		writeError(w, errNoIntrospection(client.ID))
		return
	}
	token := form.Get("token")
	if token == "" {
		writeError(w, ciba.Errorf(ciba.CodeInvalidRequest, "token is required (RFC 7662 section 2.1)"))
		return
	}
	info, err := s.Tokens.Introspect(ctx, token, form.Get("token_type_hint"), s.Now())
	switch {
	case err != nil:
		writeError(w, err)
	case info == nil:
		writeJSON(w, http.StatusOK, []byte(`{"active":false}`))
	default:
		writeJSON(w, http.StatusOK, info)
	}
}

// revoke is POST /revoke (RFC 7009 §2): a client revokes one of its
// refresh or access tokens. The answer is 200 with an empty body also for
// a token that is unknown or no longer active (RFC 7009 §2.2); another
// client's token is refused with an error and not revoked (§2.1).
func (s *Server) revoke(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	form, err := parseForm(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	var client *ciba.Client
	if s.Device != nil {
		// A public device client revokes by its client_id alone, as it
		// refreshes (RFC 7009 §2.1).
		client, _, err = s.deviceClient(ctx, r, form, s.Issuer+PathRevoke)
	} else {
		client, err = s.Clients.Authenticate(ctx, r, form, s.Issuer+PathRevoke)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	noteClient(w, client.ID)
	if !s.admitToken(w, client) {
		return
	}
	token := form.Get("token")
	if token == "" {
		writeError(w, ciba.Errorf(ciba.CodeInvalidRequest, "token is required (RFC 7009 section 2.1)"))
		return
	}
	if err := s.Tokens.Revoke(ctx, client.ID, token, form.Get("token_type_hint"), s.Now()); err != nil {
		writeError(w, err)
		return
	}
	h := w.Header()
	noStore(h)
	h["Content-Length"] = []string{"0"}
	w.WriteHeader(http.StatusOK)
}

// Authorization schemes of the userinfo endpoint.
const (
	schemeBearer = "Bearer" // RFC 6750
	schemeDPoP   = "DPoP"   // RFC 9449 §7.1
)

// challenged is a protocol error answered with a WWW-Authenticate
// challenge of its own (RFC 6750 §3, RFC 9449 §7.1).
type challenged struct {
	err       *ciba.Error
	challenge string
}

func (c *challenged) Error() string     { return c.err.Error() }
func (c *challenged) Unwrap() error     { return c.err }
func (c *challenged) Challenge() string { return c.challenge }

// resourceError is err answered at a protected resource with the
// challenge of scheme (RFC 6750 §3, RFC 9449 §7.1): the error code and
// its description as auth-params, and for DPoP the algorithms accepted.
func (s *Server) resourceError(w http.ResponseWriter, scheme string, err error) {
	e := ciba.AsError(err)
	if e.Code == ciba.CodeInvalidDPoPProof || e.Code == ciba.CodeUseDPoPNonce {
		// At a resource a proof is part of the credentials: 401 (RFC 9449
		// §7.1, §9), where the token endpoint answers 400.
		scheme = schemeDPoP
		c := *e
		c.Status = http.StatusUnauthorized
		e = &c
	}
	var b strings.Builder
	b.WriteString(scheme)
	if scheme == schemeDPoP && s.DPoP != nil {
		fmt.Fprintf(&b, ` algs="%s",`, strings.Join(s.DPoP.Algs(), " "))
	}
	fmt.Fprintf(&b, ` error="%s"`, e.Code)
	if e.Description != "" {
		fmt.Fprintf(&b, `, error_description="%s"`, ciba.SafeDescription(e.Description))
	}
	if e.Code == ciba.CodeTemporarilyUnavailable || e.Code == ciba.CodeServerError {
		writeError(w, err)
		return
	}
	w.Header().Set("WWW-Authenticate", b.String())
	writeError(w, &challenged{err: e, challenge: b.String()})
}

// noToken answers a userinfo request that carries no access token: 401
// with a challenge for each scheme and no error code (RFC 6750 §3.1).
func (s *Server) noToken(w http.ResponseWriter) {
	challenge := schemeBearer
	if s.DPoP != nil {
		challenge += `, ` + schemeDPoP + ` algs="` + strings.Join(s.DPoP.Algs(), " ") + `"`
	}
	e := &ciba.Error{Code: ciba.CodeInvalidToken, Description: "an access token is required: send it in the Authorization header"}
	w.Header().Set("WWW-Authenticate", challenge)
	writeError(w, &challenged{err: e, challenge: challenge})
}

// userinfo is GET and POST /userinfo (OIDC Core §5.3): the claims of the
// access token's user that its scopes release. The token comes in the
// Authorization header with the Bearer (RFC 6750 §2.1) or DPoP (RFC 9449
// §7.1) scheme, or as a Bearer token in a POST form body (RFC 6750 §2.2);
// never in the query (§2.3), and by one method only. A DPoP-bound token
// needs the DPoP scheme and a proof of its key for this request, with
// ath; a certificate-bound one (RFC 8705 §3) the client certificate it is
// bound to.
func (s *Server) userinfo(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	scheme, token, err := s.userinfoToken(w, r)
	switch {
	case err != nil:
		writeError(w, err)
		return
	case token == "":
		s.noToken(w)
		return
	}
	claims, cnf, err := s.Tokens.UserInfo(ctx, token, s.Now())
	if err != nil {
		s.resourceError(w, scheme, err)
		return
	}
	if err := s.checkBinding(w, r, scheme, token, cnf); err != nil {
		s.resourceError(w, scheme, err)
		return
	}
	writeJSON(w, http.StatusOK, claims)
}

// userinfoToken returns the scheme and access token of a userinfo
// request, "" for none; an invalid_request error when it carries more
// than one or one in the query.
func (s *Server) userinfoToken(w http.ResponseWriter, r *http.Request) (scheme, token string, err error) {
	if r.URL.Query().Has("access_token") {
		return "", "", ciba.Errorf(ciba.CodeInvalidRequest, "an access token in the query is not accepted (RFC 6750 section 2.3); use the Authorization header")
	}
	auth := r.Header.Values("Authorization")
	if len(auth) > 1 {
		return "", "", ciba.Errorf(ciba.CodeInvalidRequest, "more than one Authorization header")
	}
	if len(auth) == 1 {
		name, value, _ := strings.Cut(auth[0], " ")
		value = strings.TrimLeft(value, " ")
		switch {
		case strings.EqualFold(name, schemeBearer):
			scheme = schemeBearer
		case strings.EqualFold(name, schemeDPoP):
			scheme = schemeDPoP
		default:
			// Another scheme carries no token of ours (RFC 6750 §3.1).
			return "", "", nil
		}
		if value == "" || strings.ContainsAny(value, " ,") {
			return "", "", ciba.Errorf(ciba.CodeInvalidRequest, "the Authorization header is malformed")
		}
		token = value
	}
	if r.Method == http.MethodPost {
		mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if mt == "application/x-www-form-urlencoded" {
			form, err := parseForm(w, r)
			if err != nil {
				return "", "", err
			}
			if form.Has("access_token") {
				if token != "" {
					return "", "", ciba.Errorf(ciba.CodeInvalidRequest, "the access token is sent both in the Authorization header and in the body (RFC 6750 section 2)")
				}
				scheme, token = schemeBearer, form.Get("access_token")
			}
		}
	}
	return scheme, token, nil
}

// checkBinding checks that a userinfo request presenting token with
// scheme proves the keys the token is bound to (cnf): a DPoP proof of the
// key cnf.jkt names (RFC 9449 §7.1), the client certificate cnf.x5t#S256
// names (RFC 8705 §3). A DPoP-bound token sent as a bearer token is
// refused, and so is an unbound one sent with the DPoP scheme.
func (s *Server) checkBinding(w http.ResponseWriter, r *http.Request, scheme, token string, cnf map[string]string) error {
	jkt := cnf["jkt"]
	switch {
	case jkt != "" && scheme != schemeDPoP:
		return ciba.Errorf(ciba.CodeInvalidToken, "the access token is bound to a DPoP key: send it with the DPoP scheme and a DPoP proof (RFC 9449 section 7.1)")
	case jkt == "" && scheme == schemeDPoP:
		return ciba.Errorf(ciba.CodeInvalidToken, "the access token is not bound to a DPoP key: send it with the Bearer scheme")
	case jkt != "":
		proofs := r.Header.Values(headerDPoP)
		if len(proofs) != 1 {
			return ciba.Errorf(ciba.CodeInvalidDPoPProof, "exactly one DPoP header is required with a DPoP-bound access token, got %d (RFC 9449 section 7.1)", len(proofs))
		}
		if s.DPoP == nil {
			return &ciba.Error{Code: ciba.CodeServerError, Description: "internal error", Err: errors.New("httpapi: a DPoP-bound access token but no DPoP verifier")}
		}
		p, err := s.DPoP.Verify(r.Context(), proofs[0], dpop.Request{Method: r.Method, URL: s.Issuer + PathUserinfo, AccessToken: token})
		if n := s.DPoP.NewNonce(); n != "" {
			w.Header().Set(headerDPoPNonce, n)
		}
		if err != nil {
			return dpopError(err)
		}
		if subtle.ConstantTimeCompare([]byte(p.JKT), []byte(jkt)) != 1 {
			return ciba.Errorf(ciba.CodeInvalidToken, "the access token is bound to another DPoP key than the proof's (RFC 9449 section 7.1)")
		}
	}
	if x5t := cnf["x5t#S256"]; x5t != "" {
		var cert string
		if s.ClientCert != nil {
			c, err := s.ClientCert(r)
			if err != nil {
				return ciba.Errorf(ciba.CodeInvalidToken, "the access token is bound to a client certificate, and the one presented cannot be read")
			}
			cert = c
		}
		if cert == "" || subtle.ConstantTimeCompare([]byte(cert), []byte(x5t)) != 1 {
			return ciba.Errorf(ciba.CodeInvalidToken, "the access token is bound to a client certificate: present it over mutual TLS (RFC 8705 section 3)")
		}
	}
	return nil
}
