// Package httpapi is cibaproxy's HTTP face: discovery, the backchannel
// authentication endpoint, the token endpoint, the JWKS, the authentication
// channel's callback and health. Handlers parse and answer; the protocol
// decisions are the ciba service's.
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/dpop"
)

// Endpoint paths, as published in discovery.
const (
	PathDiscovery = "/.well-known/openid-configuration"
	PathBCAuthz   = "/bc-authorize"
	PathToken     = "/token"
	PathJWKS      = "/jwks"
	PathCallback  = "/ciba/callback"
	// PathUpstreamPing receives a CIBA upstream's pings (the ciba upstream
	// in ping mode): the notification endpoint registered there.
	PathUpstreamPing = "/ciba/upstream-ping"
	PathHealth       = "/healthz"
	PathReady        = "/readyz"
	PathMetrics      = "/metrics"
)

// GrantCIBA is the CIBA grant type (CIBA §10.1).
const GrantCIBA = "urn:openid:params:grant-type:ciba"

// Authenticator authenticates clients and verifies their signed request
// objects (package clientauth and jose behind it).
type Authenticator interface {
	// Authenticate authenticates the client of an HTTP request at endpoint
	// (the absolute URL being called). Failures are invalid_client (401) or
	// invalid_request errors; an error with a Challenge method asks for a
	// WWW-Authenticate header.
	Authenticate(ctx context.Context, r *http.Request, form url.Values, endpoint string) (*ciba.Client, error)
	// RequestObject verifies a signed authentication request (CIBA §7.1.1)
	// of client c and returns its claims.
	RequestObject(ctx context.Context, c *ciba.Client, raw string) (map[string]any, error)
	// RequiresSignedRequest reports whether c must send signed requests.
	RequiresSignedRequest(c *ciba.Client) bool
}

// Refresher answers the refresh_token grant (the local upstream).
type Refresher interface {
	// RefreshBound redeems refreshToken of client clientID for new tokens,
	// optionally with a narrower scope. b holds the keys the new access
	// token is bound to: the x5t#S256 of the client certificate (RFC 8705
	// §3) and the thumbprint of the DPoP proof's key (RFC 9449 §5), ""
	// each for none, and whether the client is public.
	RefreshBound(ctx context.Context, clientID, refreshToken, scope string, b ciba.Binding, now time.Time) (*ciba.TokenResponse, error)
}

// TokenForwarder passes token requests of grants other than CIBA to the
// upstream identity provider unchanged (the oidc upstream).
type TokenForwarder interface {
	// ForwardToken POSTs form with the client's authentication headers to
	// the provider's token endpoint and returns its answer; an error
	// wrapping ciba.ErrUnavailable when it cannot be reached.
	ForwardToken(ctx context.Context, form url.Values, header http.Header) (status int, h http.Header, body []byte, err error)
}

// Server holds the handlers' dependencies.
type Server struct {
	// Issuer is the issuer identifier; endpoint URLs are built from it.
	Issuer string
	// Service is the CIBA domain.
	Service *ciba.Service
	// Clients authenticates clients.
	Clients Authenticator
	// Refresher answers refresh_token grants; nil disables the grant.
	Refresher Refresher
	// Tokens serves introspection, revocation and userinfo (PathIntrospect,
	// PathRevoke, PathUserinfo) for the local issuer; nil: not served.
	Tokens TokenServices
	// Forwarder, when set, receives every token request whose grant is
	// not CIBA, unauthenticated here (the provider authenticates it).
	Forwarder TokenForwarder
	// Discovery returns the metadata document served at PathDiscovery.
	Discovery func(ctx context.Context) (map[string]any, error)
	// JWKS is the public key set served at PathJWKS.
	JWKS func() any
	// Approval serves the approval page; nil when the upstream has none.
	Approval *Approval
	// Device serves the device authorization grant (RFC 8628); nil when
	// no client uses it.
	Device *Device
	// RelayPings serves PathUpstreamPing (the ciba upstream).
	RelayPings bool
	// Limits are the abuse limits (limits.go); nil limits nothing.
	Limits *Limits
	// ClientCert returns the x5t#S256 (RFC 8705 §3.1) of the client
	// certificate of a request, presented on TLS or forwarded by a trusted
	// proxy, or "" when there is none (clientauth.Authenticator.CertThumbprint
	// fits). It is asked only for clients whose access tokens are
	// certificate-bound; nil: no request has a certificate.
	ClientCert func(r *http.Request) (string, error)
	// DPoP verifies the DPoP proofs of token requests (RFC 9449) when the
	// upstream's tokens can be bound to them (the local upstream); nil: a
	// request with a DPoP header that cibaproxy answers itself is refused
	// (grants forwarded to the identity provider keep their header).
	DPoP *dpop.Verifier
	// Observer counts answered requests; nil counts nothing.
	Observer Observer
	// Metrics, when set, is served at PathMetrics on the main listener
	// (config metrics.listen: main), where every client reaches it; the
	// operators' own listener is TelemetryHandler.
	Metrics http.Handler
	// Ready reports whether the server can serve requests: its store and
	// upstream are reachable (for PathReady). PathHealth only says that the
	// process answers.
	Ready  func(ctx context.Context) error
	Logger *slog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// TokenAliases are more paths the token endpoint answers at (such as
	// /oauth/token, where Auth0-style clients post their token requests);
	// discovery names PathToken only.
	TokenAliases []string
	// Parking, when set, holds long polls with their connections parked
	// instead of on net/http's goroutines (park.go); nil holds them there.
	Parking *Parking
}

// Handler returns the HTTP handler of all endpoints.
func (s *Server) Handler() http.Handler {
	if s.Now == nil {
		s.Now = time.Now
	}
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+PathDiscovery, func(w http.ResponseWriter, r *http.Request) {
		doc, err := s.Discovery(r.Context())
		if err != nil {
			s.Logger.Error("discovery", slog.Any("error", err))
			writeError(w, &ciba.Error{Code: ciba.CodeTemporarilyUnavailable, Description: "the provider metadata is unavailable; try again later", Err: err})
			return
		}
		b, err := json.Marshal(doc)
		if err != nil {
			writeError(w, &ciba.Error{Code: ciba.CodeServerError, Description: "the provider metadata could not be encoded", Err: err})
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		_, _ = w.Write(b)
	})
	mux.HandleFunc("GET "+PathJWKS, func(w http.ResponseWriter, r *http.Request) {
		b, err := json.Marshal(s.JWKS())
		if err != nil {
			writeError(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		_, _ = w.Write(b)
	})
	mux.HandleFunc("POST "+PathBCAuthz, s.backchannelAuthorize)
	mux.HandleFunc("POST "+PathToken, s.token)
	for _, alias := range s.TokenAliases {
		mux.HandleFunc("POST "+alias, s.token)
	}
	mux.HandleFunc("POST "+PathCallback, s.callback)
	if s.RelayPings {
		mux.HandleFunc("POST "+PathUpstreamPing, s.upstreamPing)
	}
	allowed := map[string]string{
		PathBCAuthz: "POST", PathToken: "POST", PathCallback: "POST",
		PathDiscovery: "GET, HEAD", PathJWKS: "GET, HEAD", PathHealth: "GET, HEAD", PathReady: "GET, HEAD",
	}
	if s.Tokens != nil {
		s.registerTokens(mux)
		allowed[PathIntrospect], allowed[PathRevoke], allowed[PathUserinfo] = "POST", "POST", "GET, HEAD, POST"
	}
	if s.Approval != nil {
		if s.Approval.Logger == nil {
			s.Approval.Logger = s.Logger
		}
		s.Approval.limits, s.Approval.now = s.Limits, s.Now
		s.Approval.register(mux)
	}
	if s.Device != nil {
		s.Device.register(mux, s)
	}
	mux.HandleFunc("GET "+PathHealth, s.health)
	if s.Metrics != nil {
		mux.Handle("GET "+PathMetrics, s.Metrics)
	}
	mux.HandleFunc("GET "+PathReady, s.ready)
	for path, allow := range allowed {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "invalid_request", "error_description": r.Method + " is not allowed here; use " + allow})
		})
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not_found", "error_description": "no such endpoint: " + r.Method + " " + ciba.SafeDescriptionMax(r.URL.Path, 200)})
	})
	return s.observe(s.recoverer(s.limitFailures(mux)))
}

// TelemetryHandler returns the handler of the operators' own listener
// (config metrics.listen): metrics at PathMetrics, and PathHealth and
// PathReady as on the main listener; nothing else, so nothing a client
// uses is served there and nothing of it on the main listener.
func (s *Server) TelemetryHandler(metrics http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET "+PathMetrics, metrics)
	mux.HandleFunc("GET "+PathHealth, s.health)
	mux.HandleFunc("GET "+PathReady, s.ready)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not_found", "error_description": "this listener serves only GET " + PathMetrics + ", " + PathHealth + " and " + PathReady})
	})
	return mux
}

// health answers PathHealth: the process answers.
func (s *Server) health(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// ready answers PathReady: the store and the upstream are reachable.
func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	if s.Ready != nil {
		if err := s.Ready(r.Context()); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "error": err.Error()})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// recoverer answers server_error instead of dropping the connection when a
// handler panics, and logs it.
func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				// The route's pattern, not the path: paths carry secrets
				// (approval ids, enrolment tokens) that no log line may hold.
				s.Logger.Error("handler panic", slog.String("route", routeOf(r)), slog.Any("panic", v))
				writeError(w, &ciba.Error{Code: ciba.CodeServerError, Description: "internal error"})
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// routeOf is the pattern of the route that matched r ("/approve/{id}"),
// without its method, or "unmatched".
func routeOf(r *http.Request) string {
	if r.Pattern == "" {
		return "unmatched"
	}
	if _, path, ok := strings.Cut(r.Pattern, " "); ok {
		return path
	}
	return r.Pattern
}

// authParams are the CIBA §7.1 authentication parameters; with a signed
// request object they must all be inside it.
var authParams = []string{"scope", "client_notification_token", "acr_values", "login_hint_token", "id_token_hint", "login_hint", "binding_message", "user_code", "requested_expiry", "dpop_jkt", "authorization_details", "resource", "audience"}

// formClient parses the form of r and authenticates its client for the
// endpoint at path (below the issuer); on failure it writes the error and
// returns false.
func (s *Server) formClient(w http.ResponseWriter, r *http.Request, path string) (url.Values, *ciba.Client, bool) {
	form, err := parseForm(w, r)
	if err != nil {
		writeError(w, err)
		return nil, nil, false
	}
	client, err := s.Clients.Authenticate(r.Context(), r, form, s.Issuer+path)
	if err != nil {
		writeError(w, err)
		return nil, nil, false
	}
	noteClient(w, client.ID)
	return form, client, true
}

// backchannelAuthorize is the backchannel authentication endpoint (CIBA §7).
func (s *Server) backchannelAuthorize(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	form, client, ok := s.formClient(w, r, PathBCAuthz)
	if !ok {
		return
	}
	if !s.admitBCAuthorize(w, r, client) {
		return
	}
	if form.Has("request_uri") {
		writeError(w, ciba.Errorf(ciba.CodeInvalidRequest, "request_uri is not supported; send the request object in the request parameter"))
		return
	}
	get := form.Get
	resources := form["resource"]
	if raw := form.Get("request"); raw != "" {
		for _, p := range authParams {
			if form.Has(p) {
				writeError(w, ciba.Errorf(ciba.CodeInvalidRequest, "parameter %q must be inside the signed request object, not beside it (CIBA §7.1.1)", p))
				return
			}
		}
		claims, err := s.Clients.RequestObject(ctx, client, raw)
		if err != nil {
			writeError(w, err)
			return
		}
		if get, err = claimGetter(claims); err != nil {
			writeError(w, err)
			return
		}
		if resources, err = claimResources(claims["resource"]); err != nil {
			writeError(w, err)
			return
		}
	} else if s.Clients.RequiresSignedRequest(client) {
		writeError(w, ciba.Errorf(ciba.CodeInvalidRequest, "client %q must send a signed request object (CIBA §7.1.1)", client.ID))
		return
	}
	cert, err := s.certBinding(r, client)
	if err != nil {
		writeError(w, err)
		return
	}
	jkt, err := s.requestDPoPKey(w, r, client, get("dpop_jkt"), PathBCAuthz)
	if err != nil {
		writeError(w, err)
		return
	}
	// What the consumption-device validation hook is told of the request.
	ctx = ciba.WithOrigin(ctx, ciba.Origin{Addr: s.Limits.ClientIP(r), RequestID: RequestID(ctx)})
	resp, err := s.Service.Authorize(ctx, client, ciba.AuthParams{
		Scope: get("scope"),
		Hint: ciba.Hint{
			LoginHint:      get("login_hint"),
			LoginHintToken: get("login_hint_token"),
			IDTokenHint:    get("id_token_hint"),
		},
		BindingMessage:          get("binding_message"),
		UserCode:                get("user_code"),
		RequestedExpiry:         get("requested_expiry"),
		ClientNotificationToken: get("client_notification_token"),
		ACRValues:               get("acr_values"),
		AuthorizationDetails:    get("authorization_details"),
		Resources:               resources,
		Audience:                get("audience"),
		CertThumbprint:          cert,
		DPoPJKT:                 jkt,
	})
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// claimGetter turns request-object claims into a parameter getter. The
// parameters are strings, except requested_expiry, which may be a number
// (CIBA §7.1.1 examples use both), and authorization_details, a JSON array
// (RFC 9396 §3) passed on as JSON text (or a string holding one, as in the
// form).
func claimGetter(claims map[string]any) (func(string) string, error) {
	vals := make(map[string]string, len(authParams))
	for _, p := range authParams {
		v, ok := claims[p]
		if !ok || v == nil || p == "resource" {
			continue
		}
		if _, isString := v.(string); p == "authorization_details" && !isString {
			text, err := json.Marshal(v)
			if err != nil {
				return nil, ciba.Errorf(ciba.CodeInvalidAuthorizationDetails, "request object claim authorization_details cannot be read as JSON")
			}
			vals[p] = string(text)
			continue
		}
		switch x := v.(type) {
		case string:
			vals[p] = x
		case float64:
			if p != "requested_expiry" {
				return nil, ciba.Errorf(ciba.CodeInvalidRequest, "request object claim %q must be a string", p)
			}
			vals[p] = strconv.FormatFloat(x, 'f', -1, 64)
		case json.Number:
			if p != "requested_expiry" {
				return nil, ciba.Errorf(ciba.CodeInvalidRequest, "request object claim %q must be a string", p)
			}
			vals[p] = x.String()
		default:
			return nil, ciba.Errorf(ciba.CodeInvalidRequest, "request object claim %q must be a string", p)
		}
	}
	return func(k string) string { return vals[k] }, nil
}

// tokenPath is the path of a token request: PathToken, or the alias
// (Server.TokenAliases) it came to.
func (s *Server) tokenPath(r *http.Request) string {
	if r.URL.Path != PathToken && slices.Contains(s.TokenAliases, r.URL.Path) {
		return r.URL.Path
	}
	return PathToken
}

// claimResources reads a request object's resource claim (RFC 8707 §2):
// absent, one string, or an array of strings.
func claimResources(v any) ([]string, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case string:
		return []string{x}, nil
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return nil, ciba.Errorf(ciba.CodeInvalidRequest, "request object claim resource must be a string or an array of strings")
			}
			out = append(out, s)
		}
		return out, nil
	}
	return nil, ciba.Errorf(ciba.CodeInvalidRequest, "request object claim resource must be a string or an array of strings")
}

// token is the token endpoint: the CIBA grant (CIBA §10.1, §11) and, where
// the upstream issues them, refresh tokens (RFC 6749 §6).
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	form, err := parseForm(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	gt := form.Get("grant_type")
	if s.Forwarder != nil && gt != GrantCIBA && (s.Device == nil || gt != GrantDeviceCode) {
		s.forward(w, r, form)
		return
	}
	var client *ciba.Client
	public := false
	if s.Device != nil && (gt == GrantDeviceCode || gt == "refresh_token") {
		// A public device client refreshes by its client_id alone, as it
		// polls: its refresh tokens are rotated and a reused one revokes
		// its family (RFC 9700 §4.14.2), what a public client's refresh
		// tokens need. The refresher refuses another client's token.
		client, public, err = s.deviceClient(ctx, r, form, s.Issuer+PathToken)
	} else {
		client, err = s.Clients.Authenticate(ctx, r, form, s.Issuer+PathToken)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	noteClient(w, client.ID)
	if !s.admitToken(w, client) {
		return
	}
	cert, err := s.certBinding(r, client)
	if err != nil {
		writeError(w, err)
		return
	}
	// A DPoP proof names the URL the client called: PathToken or an alias.
	jkt, err := s.dpopBinding(w, r, client, s.tokenPath(r))
	if err != nil {
		writeError(w, err)
		return
	}
	switch gt {
	case GrantDeviceCode:
		if s.Device == nil {
			writeError(w, ciba.Errorf(ciba.CodeUnsupportedGrantType, "the device_code grant is not enabled"))
			return
		}
		body, err := s.Device.Grant.PollBound(ctx, client, form.Get("device_code"), ciba.Binding{Cert: cert, JKT: jkt})
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, body)
	case GrantCIBA:
		s.Parking.reclaim(form.Get("auth_req_id"))
		body, hold, err := s.Service.PollBoundHold(ctx, client, form.Get("auth_req_id"), ciba.Binding{Cert: cert, JKT: jkt})
		if hold != nil {
			if s.park(w, r, hold) {
				return
			}
			body, err = hold.Wait(ctx)
		}
		s.writePoll(w, body, err)
	case "refresh_token":
		if s.Refresher == nil {
			writeError(w, ciba.Errorf(ciba.CodeUnsupportedGrantType, "the refresh_token grant is not available with this upstream"))
			return
		}
		tr, err := s.Refresher.RefreshBound(ctx, client.ID, form.Get("refresh_token"), form.Get("scope"), ciba.Binding{Cert: cert, JKT: jkt, PublicClient: public}, s.Now())
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, tr)
	case "":
		writeError(w, ciba.Errorf(ciba.CodeInvalidRequest, "grant_type is required"))
	default:
		writeError(w, ciba.Errorf(ciba.CodeUnsupportedGrantType, "grant_type %q is not supported", truncate(gt, 64)))
	}
}

// certBinding returns the x5t#S256 of the client certificate that client
// c's request is bound to (RFC 8705 §3): "" for a client whose access
// tokens are not certificate-bound, whatever it presented. A bound client
// must present a certificate on every request of its grants; without one
// the request is invalid_request and changes nothing (RFC 8705 §3.4 lets
// the server refuse rather than issue unbound tokens).
func (s *Server) certBinding(r *http.Request, c *ciba.Client) (string, error) {
	if !c.CertBoundAccessTokens {
		return "", nil
	}
	var cert string
	if s.ClientCert != nil {
		var err error
		if cert, err = s.ClientCert(r); err != nil {
			return "", err
		}
	}
	if cert == "" {
		return "", ciba.Errorf(ciba.CodeInvalidRequest, "client %q has certificate-bound access tokens (tls_client_certificate_bound_access_tokens): make this request over mutual TLS with its client certificate (RFC 8705 §3)", c.ID)
	}
	return cert, nil
}

// forward passes a token request to the upstream provider and its answer
// back to the client.
func (s *Server) forward(w http.ResponseWriter, r *http.Request, form url.Values) {
	status, h, body, err := s.Forwarder.ForwardToken(r.Context(), form, r.Header)
	if err != nil {
		if errors.Is(err, ciba.ErrUnavailable) {
			s.Logger.Error("token: identity provider unavailable", slog.Any("error", err))
			writeError(w, &ciba.Error{Code: ciba.CodeTemporarilyUnavailable, Description: "the identity provider is unavailable; try again later", Err: err})
			return
		}
		s.Logger.Error("token: forwarding to the identity provider failed", slog.Any("error", err))
		writeError(w, &ciba.Error{Code: ciba.CodeServerError, Description: "the identity provider failed", Err: err})
		return
	}
	for k, vs := range h {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// maxCallback bounds the callback body.
const maxCallback = 8 << 10

// callback is where the webhook channel's authentication-device service
// answers: POST with the per-request bearer and {"status":"approved"|"denied"}.
func (s *Server) callback(w http.ResponseWriter, r *http.Request) {
	auth := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(auth, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		writeError(w, ciba.Errorf(ciba.CodeInvalidToken, "an Authorization: Bearer header with the callback token is required"))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxCallback))
	if err != nil {
		writeError(w, ciba.Errorf(ciba.CodeInvalidRequest, "the body could not be read or is larger than %d bytes", maxCallback))
		return
	}
	cb, err := parseCallback(body)
	if err != nil {
		writeError(w, err)
		return
	}
	if err := s.Service.Callback(r.Context(), token, cb.Status == "approved", cb.Reason, cb.DetailsDigest); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// upstreamPing receives a CIBA upstream's ping (CIBA §10.2): the bearer is
// the notification token cibaproxy gave it, the body {"auth_req_id"} its
// own request id.
func (s *Server) upstreamPing(w http.ResponseWriter, r *http.Request) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		writeError(w, ciba.Errorf(ciba.CodeInvalidToken, "an Authorization: Bearer header with the notification token is required"))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxCallback))
	if err != nil {
		writeError(w, ciba.Errorf(ciba.CodeInvalidRequest, "the body could not be read or is larger than %d bytes", maxCallback))
		return
	}
	var ping struct {
		AuthReqID string `json:"auth_req_id"`
	}
	if e := decodeBody(body, &ping, `{"auth_req_id":"..."} (CIBA §10.2)`); e != nil {
		writeError(w, e)
		return
	}
	if ping.AuthReqID == "" {
		writeError(w, ciba.Errorf(ciba.CodeInvalidRequest, "the body must be a JSON object with auth_req_id (CIBA §10.2)"))
		return
	}
	if err := s.Service.RelayPing(r.Context(), token, ping.AuthReqID); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// callbackBody is the callback's body: {"status":"approved"|"denied"}, an
// optional "reason" for a denial, and an optional
// "authorization_details_digest", the digest of the authorization_details
// the device showed (the channel's message carries it).
type callbackBody struct {
	Status        string
	Reason        string
	DetailsDigest string
}

// parseCallback decodes a callback body (callbackBody). A member given
// twice is refused (decodeBody): the answer must not depend on which copy
// a parser keeps.
func parseCallback(body []byte) (callbackBody, error) {
	var cb struct {
		Status        *string `json:"status"`
		Reason        string  `json:"reason"`
		DetailsDigest string  `json:"authorization_details_digest"`
	}
	if e := decodeBody(body, &cb, `{"status":"approved"}`); e != nil {
		return callbackBody{}, e
	}
	if cb.Status == nil {
		return callbackBody{}, ciba.Errorf(ciba.CodeInvalidRequest, "status is required: \"approved\" or \"denied\"")
	}
	switch *cb.Status {
	case "approved", "denied":
	default:
		return callbackBody{}, ciba.Errorf(ciba.CodeInvalidRequest, "status must be \"approved\" or \"denied\", got %q", truncate(*cb.Status, 32))
	}
	if len(cb.Reason) > 200 {
		return callbackBody{}, ciba.Errorf(ciba.CodeInvalidRequest, "reason is longer than 200 characters")
	}
	if len(cb.DetailsDigest) > 64 {
		return callbackBody{}, ciba.Errorf(ciba.CodeInvalidRequest, "authorization_details_digest is longer than 64 characters")
	}
	return callbackBody{Status: *cb.Status, Reason: cb.Reason, DetailsDigest: cb.DetailsDigest}, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
