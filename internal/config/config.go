// Package config reads cibaproxy's one YAML configuration file.
//
// [Load] reads the file, expands environment variables, decodes it strictly
// (an unknown key is an error, not a silently ignored typo), fills in
// defaults and validates the result. When anything is wrong it returns a
// [Problems] value that lists every problem at once, each with its file,
// line and YAML path, so an operator fixes a file in one round.
//
// # Environment variables
//
// String values may refer to environment variables, with shell semantics:
//
//	${VAR}           the value of VAR, or "" when VAR is unset
//	${VAR:-default}  the value of VAR, or default when VAR is unset or empty
//	$$               a literal "$"
//
// Expansion happens after YAML parsing and only inside string scalars, so a
// value containing ':' or '#' cannot change the structure of the file, and
// keys are never expanded. A '$' followed by anything else is kept as is, so
// bcrypt hashes ("$2a$10$…") need no escaping; the $VAR form without braces
// is not expanded. A default may itself contain ${…} references. A secret
// containing "${" or "$$" must double its '$'.
//
// A duration, number or boolean whose value is empty after expansion
// (for example "${TIMEOUT}" with TIMEOUT unset) counts as absent and gets
// its default.
//
// # Relative paths
//
// Files the configuration reads (upstream.local.users_file,
// tokens.signing_key_file) are relative to the directory of the
// configuration file. The data path the process writes (store.path) is
// relative to the working directory, like any path given on a command line.
package config

import (
	"crypto"
	"encoding/json"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/clientmeta"
)

// Values of [Log.Level].
const (
	LogDebug = "debug"
	LogInfo  = "info"
	LogWarn  = "warn"
	LogError = "error"
)

// Values of [Log.Format].
const (
	LogText = "text"
	LogJSON = "json"
)

// Values of [Store.Type].
const (
	StoreEmbedded = "embedded"
	StoreMemory   = "memory"
)

// Values of [Upstream.Type].
const (
	UpstreamLocal = "local"
	UpstreamOIDC  = "oidc"
	UpstreamCIBA  = "ciba"
)

// Token delivery modes of [Client.DeliveryMode] (CIBA Core §5).
const (
	DeliveryPoll = clientmeta.ModePoll
	DeliveryPing = clientmeta.ModePing
	DeliveryPush = clientmeta.ModePush
)

// Client authentication methods of [Client.TokenEndpointAuthMethods]
// (OIDC Core §9, RFC 7523).
const (
	AuthClientSecretBasic = clientmeta.MethodSecretBasic
	AuthClientSecretPost  = clientmeta.MethodSecretPost
	AuthPrivateKeyJWT     = clientmeta.MethodPrivateKeyJWT
)

// Config is the whole configuration of one cibaproxy instance. [Load]
// returns it with every default filled in and every rule checked, so the
// code that wires the server can use its values without checking them again.
type Config struct {
	// Issuer is the OpenID Provider identifier: the "iss" of every token
	// and the base of the discovery document (OIDC Discovery §3). Required:
	// an absolute http or https URL without query, fragment or trailing
	// slash (endpoint URLs are Issuer followed by their path). Clients
	// compare it byte for byte, so changing it (even a trailing slash)
	// invalidates every token and cached discovery document.
	Issuer string `yaml:"issuer"`

	// Listen is the host:port the HTTP server binds. Default
	// "127.0.0.1:8080", reachable from this machine only; an empty host
	// (":8080") listens on every interface, which exposes the server to
	// the network.
	Listen string `yaml:"listen"`

	// HTTP holds settings of the HTTP endpoints beyond the listener.
	HTTP HTTP `yaml:"http"`

	// Log configures logging.
	Log Log `yaml:"log"`

	// Store configures where auth requests and keys are kept.
	Store Store `yaml:"store"`

	// Upstream configures where users and tokens come from.
	Upstream Upstream `yaml:"upstream"`

	// CIBA holds the protocol settings of backchannel authentication.
	CIBA CIBA `yaml:"ciba"`

	// Tokens configures the tokens cibaproxy issues and the keys it uses.
	Tokens Tokens `yaml:"tokens"`

	// Channels configures how the user's authentication device is reached.
	Channels Channels `yaml:"channels"`

	// Clients are the registered CIBA clients. At least one is required.
	Clients []Client `yaml:"clients"`

	// TLS makes cibaproxy serve HTTPS and request client certificates
	// (mutual TLS, RFC 8705). Default off: plain HTTP.
	TLS TLS `yaml:"tls"`

	// MTLSProxy believes the client certificate a TLS-terminating proxy
	// forwards in a header, from trusted addresses only.
	MTLSProxy MTLSProxy `yaml:"mtls_proxy"`

	// FAPI switches the FAPI-CIBA profile on for every client (see
	// docs/fapi.md). Default off; a single client opts in with
	// [Client.Profile].
	FAPI FAPI `yaml:"fapi"`

	// Device configures the device authorization grant (RFC 8628), used
	// by clients with device_authorization: true.
	Device Device `yaml:"device"`

	// Metrics configures the Prometheus metrics endpoint.
	Metrics Metrics `yaml:"metrics"`

	// Outbound restricts the requests to URLs clients chose (notification
	// endpoints, jwks_uri) against server-side request forgery.
	Outbound Outbound `yaml:"outbound"`

	// Limits are the abuse limits (rates per client, user and address).
	Limits Limits `yaml:"limits"`

	// Tracing configures OpenTelemetry traces (OTLP over HTTP); off by
	// default.
	Tracing Tracing `yaml:"tracing"`

	// Validation configures the consumption-device validation hook, a
	// webhook that approves each backchannel authentication request
	// before it is accepted; off by default.
	Validation Validation `yaml:"validation"`

	// Pages brands the approval and device pages (service name, logo,
	// accent colour) and describes scopes to users.
	Pages Pages `yaml:"pages"`

	// AuthorizationDetails configures Rich Authorization Requests (RFC
	// 9396): the authorization_details types accepted, their schemas and
	// bounds. Off by default.
	AuthorizationDetails AuthorizationDetails `yaml:"authorization_details"`

	// Approval says how users of the local upstream approve on the
	// approval and device pages: with a password, a passkey (WebAuthn)
	// or either (docs/passkeys.md).
	Approval Approval `yaml:"approval"`
}

// Metrics configures where Prometheus metrics are served. The metrics name
// every client_id and count its requests, failures and limits: they are
// for operators, not for whoever reaches the protocol endpoints.
type Metrics struct {
	// Listen is where GET /metrics is served:
	//
	//   - a host:port, e.g. "127.0.0.1:9464" (the shipped examples): a
	//     listener of its own that serves /metrics, /healthz and /readyz
	//     and nothing else;
	//   - "main" (MetricsOnMain): /metrics on the main listener, beside
	//     the protocol endpoints, as before this option had a default;
	//     anyone who reaches cibaproxy reads the metrics unless the load
	//     balancer blocks the path;
	//   - empty (default): metrics are not served.
	//
	// /healthz and /readyz stay on the main listener in every case.
	Listen string `yaml:"listen"`
}

// MetricsOnMain is the [Metrics.Listen] value that serves /metrics on the
// main listener.
const MetricsOnMain = "main"

// Log configures logging.
type Log struct {
	// Level is the lowest level logged: "debug", "info", "warn" or
	// "error". Default "info". "debug" is verbose on the poll path.
	Level string `yaml:"level"`

	// Format is "text" (human readable, default) or "json" (one object
	// per line, for log collectors).
	Format string `yaml:"format"`
}

// Store configures the state store.
type Store struct {
	// Type is "embedded" (default: durable, on local disk, one instance),
	// "redis" (shared by several instances; see [Redis]) or "memory" (state is lost on restart: for tests and demos only;
	// every pending request and the generated keys vanish with the
	// process).
	Type string `yaml:"type"`

	// Path is the database file of the embedded store, relative to the
	// working directory. Default "./data/cibaproxy.db". It holds the
	// generated signing and encryption keys, so protect it like a private
	// key. Must be empty for the memory and redis stores.
	Path string `yaml:"path"`

	// Redis configures the redis store. Required when Type is "redis".
	Redis Redis `yaml:"redis"`
}

// Upstream configures where users and tokens come from (DESIGN.md, "Where
// tokens come from").
type Upstream struct {
	// Type is the kind of upstream: "local" (the default: cibaproxy is
	// the issuer and knows the users), "oidc" (federation to an existing
	// OpenID Provider, whose tokens the clients receive) or "ciba" (relay
	// to a CIBA-capable provider, shielding it from the clients' polling).
	Type string `yaml:"type"`

	// Local configures the "local" upstream. Required when Type is "local".
	Local LocalUpstream `yaml:"local"`

	// OIDC configures the "oidc" upstream. Required when Type is "oidc".
	OIDC OIDCUpstream `yaml:"oidc"`

	// CIBA configures the "ciba" upstream. Required when Type is "ciba".
	CIBA CIBAUpstream `yaml:"ciba"`
}

// LocalUpstream configures the "local" upstream: cibaproxy is the issuer
// and knows the users itself.
type LocalUpstream struct {
	// Users are the users, inline. After [Load] this also holds the users
	// of UsersFile, after the inline ones. Together there must be at
	// least one.
	Users []User `yaml:"users"`

	// UsersFile is an optional YAML file holding a list of users with the
	// same keys as Users, so the user list can be kept, generated and
	// permission-protected apart from the rest of the configuration. A
	// relative path is relative to the configuration file's directory;
	// after [Load] it holds the resolved path. Environment variables are
	// expanded in it as in the main file.
	UsersFile string `yaml:"users_file"`

	// Scopes are the scopes, besides the standard OpenID Connect ones
	// (openid, profile, email, address, phone, offline_access), that this
	// issuer grants to a client without its own clients[].scopes list.
	// Other scopes such a client requests are dropped from the request
	// and its tokens (OIDC Core §3.1.2.1; the token response's scope
	// says what was granted, RFC 6749 §3.3). A client with a scopes list
	// may request exactly the scopes on it. Default: none.
	Scopes []string `yaml:"scopes"`
}

// User is one user of the local upstream.
type User struct {
	// Username is what clients send as login_hint and what the user types
	// on the approval page. Required, unique.
	Username string `yaml:"username"`

	// Subject is the "sub" claim of the user's tokens (OIDC Core §2): at
	// most 255 ASCII characters, unique. Default: Username. Clients key
	// accounts on it, so it must never change or be given to someone
	// else; set it explicitly if usernames can change.
	Subject string `yaml:"subject"`

	// PasswordHash is the bcrypt hash of the user's password
	// ("$2a$10$…", from `printf %s 'secret' | cibaproxy hash-secret`).
	// Required.
	// Plain passwords are not accepted.
	PasswordHash string `yaml:"password_hash"`

	// UserCodeHash is the optional bcrypt hash of the user's CIBA
	// user_code (CIBA Core §7.1), checked for clients that set
	// backchannel_user_code_parameter. Empty: the user has no user code,
	// so such clients cannot start a request for this user.
	UserCodeHash string `yaml:"user_code_hash"`

	// Claims are extra ID-token and userinfo claims (email, name …),
	// released by scope. They must be representable as JSON and must not
	// set a claim cibaproxy sets itself (iss, sub, aud, exp …).
	Claims map[string]any `yaml:"claims"`

	// ApprovalMethod overrides approval.method for this user: "passkey",
	// "password" or "either". Empty: approval.method.
	ApprovalMethod string `yaml:"approval_method"`
}

// CIBA holds the protocol settings of backchannel authentication
// (CIBA Core §7).
type CIBA struct {
	// DefaultExpiry is the expires_in of a request without
	// requested_expiry. Default 5m; must be positive.
	DefaultExpiry time.Duration `yaml:"default_expiry"`

	// MaxExpiry caps requested_expiry: a longer request is shortened to it
	// and expires_in says so. Default 30m; must be at least
	// DefaultExpiry. Long values keep pending requests (and approval
	// links) alive longer.
	MaxExpiry time.Duration `yaml:"max_expiry"`

	// Interval is the minimum poll interval announced to poll clients
	// (CIBA Core §7.3); faster polls get slow_down. Default 5s; at least
	// 1s.
	Interval time.Duration `yaml:"interval"`

	// LongPoll holds a pending poll open up to this long until the result
	// lands (CIBA Core §7.3 allows it), so a client learns the result at
	// once. 0 (default) answers at once; at most 60s, as proxies and
	// clients tend to cut idle HTTP requests beyond that. Each held poll
	// costs an open connection.
	LongPoll time.Duration `yaml:"long_poll"`

	// ExpiredGrace keeps expired and redeemed requests this long so that a
	// late poll hears expired_token or invalid_grant rather than an
	// unknown auth_req_id. Default 10m; 0 forgets them at once.
	ExpiredGrace time.Duration `yaml:"expired_grace"`

	// BindingMessageMax is the longest binding_message accepted, in
	// characters (CIBA Core §7.1 asks that it be short enough to show on
	// the authentication device). Default 64; between 1 and 256.
	BindingMessageMax int `yaml:"binding_message_max"`

	// LoginHintIssuers are issuers, besides cibaproxy's own, whose
	// iss_sub login_hints are accepted: a login_hint
	// {"format":"iss_sub","iss":"<issuer>","sub":"<subject>"} (what
	// Auth0-style clients send) names the user by sub when iss is the
	// issuer or one of these (a trailing slash either way makes no
	// difference); any other iss is invalid_request. Empty by default.
	LoginHintIssuers []string `yaml:"login_hint_issuers"`
}

// HTTP holds settings of the HTTP endpoints.
type HTTP struct {
	// TokenAliases are more paths the token endpoint answers at, each an
	// absolute path such as /oauth/token (where Auth0-style clients send
	// their token requests, whatever discovery says). Discovery still
	// names /token. Empty by default.
	TokenAliases []string `yaml:"token_aliases"`
}

// Tokens configures the tokens cibaproxy issues and the keys it uses.
type Tokens struct {
	// AccessTokenTTL is the lifetime of access tokens. Default 10m; must
	// be positive. Access tokens are JWTs: a revoked one is inactive at
	// introspection and userinfo, but a resource server that validates
	// it alone accepts it until it expires, so keep it short.
	AccessTokenTTL time.Duration `yaml:"access_token_ttl"`

	// IDTokenTTL is the lifetime of ID tokens. Default 10m; must be
	// positive.
	IDTokenTTL time.Duration `yaml:"id_token_ttl"`

	// RefreshTokenTTL is the lifetime of refresh tokens. Default 24h; 0
	// issues no refresh tokens. A refresh token lets its holder get new
	// access tokens without the user for this long.
	RefreshTokenTTL time.Duration `yaml:"refresh_token_ttl"`

	// DPoPNonce makes DPoP proofs carry a server nonce (RFC 9449 §8): a
	// proof without a valid one is refused with use_dpop_nonce and a
	// DPoP-Nonce header the client retries with. Nonces are an HMAC over
	// their time under a key kept in the store, so every instance that
	// shares the store accepts them; each is good for 5 minutes. It limits
	// proofs made in advance by someone who had the key for a while.
	// Default false. The local upstream only.
	DPoPNonce bool `yaml:"dpop_nonce"`

	// DPoPAlgs are the signature algorithms DPoP proofs may use (RFC 9449
	// §4.2), listed in discovery as dpop_signing_alg_values_supported.
	// Default: every asymmetric JWS algorithm (ES256, ES384, ES512, PS256,
	// PS384, PS512, RS256, RS384, RS512, EdDSA); "none" and the HS*
	// algorithms are never allowed. The local upstream only.
	DPoPAlgs []string `yaml:"dpop_algs"`

	// DPoPWindow is how far a DPoP proof's iat may be from the server's
	// clock, either way (RFC 9449 §11.1): a proof is accepted for at most
	// twice this long, and its jti is remembered that long. Default 60s;
	// between 5s and 5m. The local upstream only.
	DPoPWindow time.Duration `yaml:"dpop_window"`

	// SigningKeyFile is an optional file holding the token signing key: a
	// PEM RSA (PKCS#1 or PKCS#8, at least 2048 bits) or EC (SEC 1 or
	// PKCS#8, P-256, P-384 or P-521) private key, or a private JWK. A
	// relative path is relative to the configuration file's directory;
	// after [Load] it holds the resolved path. Empty (default): a key is
	// generated on first start and kept in the store. Whoever can read
	// the file can mint tokens for every client.
	SigningKeyFile string `yaml:"signing_key_file"`

	// SigningKey is the key read from SigningKeyFile (an *rsa.PrivateKey
	// or *ecdsa.PrivateKey), or nil when SigningKeyFile is empty. Set by
	// [Load], not read from YAML.
	SigningKey crypto.Signer `yaml:"-"`

	// SigningKeyID is the "kid" of SigningKeyFile when it is a JWK that
	// has one; empty otherwise (the caller derives one). Set by [Load].
	SigningKeyID string `yaml:"-"`

	// SigningKeyAlg is the "alg" of SigningKeyFile when it is a JWK that
	// names one; empty otherwise (the key's default applies). Set by
	// [Load]; under fapi.ciba it must be PS256 or ES256.
	SigningKeyAlg string `yaml:"-"`

	// EncryptionKeys encrypt the tokens cibaproxy holds between approval
	// and delivery (AES-256-GCM). The first key encrypts, all of them
	// decrypt: to rotate, put the new key first and remove the old one
	// once the longest request lifetime has passed. Empty (default): a key
	// is generated on first start and kept in the store, next to the data
	// it protects; set keys here to keep them apart from the store.
	EncryptionKeys []EncryptionKey `yaml:"encryption_keys"`
}

// EncryptionKey is one key of [Tokens.EncryptionKeys].
type EncryptionKey struct {
	// ID names the key inside encrypted values. Required, unique, at most
	// 255 bytes. Never reuse an id for different key material.
	ID string `yaml:"id"`

	// Key is the base64 (standard or URL alphabet, padded or not) of
	// exactly 32 random bytes, e.g. from `openssl rand -base64 32`.
	// Required. Use ${VAR} rather than writing it in the file.
	Key string `yaml:"key"`

	// Secret is Key decoded: 32 bytes. Set by [Load].
	Secret []byte `yaml:"-"`
}

// Channels configures how cibaproxy reaches the user's authentication
// device (DESIGN.md, "Authentication channels").
type Channels struct {
	// Order lists the channels that are on, in the order they are tried
	// for each request: the first that can reach the user is used (Web
	// Push when the user has subscribed a browser, e-mail when the user
	// has an address, the webhook always), the next on a permanent
	// failure. Names: webpush, email, webhook; each configured channel
	// must be listed once. Default: the configured ones in that order.
	Order []string `yaml:"order"`

	// Webhook configures the webhook channel.
	Webhook Webhook `yaml:"webhook"`

	// Email configures the e-mail channel.
	Email Email `yaml:"email"`

	// WebPush configures the Web Push channel.
	WebPush WebPush `yaml:"webpush"`
}

// Webhook configures the webhook authentication channel: cibaproxy POSTs
// each request to URL, and the authentication-device service answers on
// /ciba/callback.
type Webhook struct {
	// URL is where requests are POSTed. Empty (default): the channel is
	// off. Otherwise an absolute http or https URL; use https beyond
	// loopback, since each POST carries a callback bearer that can approve
	// the request.
	URL string `yaml:"url"`

	// Timeout bounds each POST. Default 5s; must be positive.
	Timeout time.Duration `yaml:"timeout"`
}

// Client is one registered CIBA client (CIBA Core §4 registration
// metadata).
type Client struct {
	// ID is the client_id. Required, unique, printable ASCII
	// (RFC 6749 Appendix A.1).
	ID string `yaml:"client_id"`

	// Name is shown to the user on the authentication device. Default: ID.
	Name string `yaml:"client_name"`

	// Secret is the plain client secret for client_secret_basic and
	// client_secret_post. Exactly one of Secret and SecretHash is required
	// when one of those methods is listed; neither is allowed otherwise,
	// except a plain Secret for AllowHS256RequestObject. A plain secret
	// allows a fast constant-time check but is only as safe as the file:
	// prefer ${VAR}, or SecretHash. Write "$$" for a '$' (needed before
	// '{' or '$').
	Secret string `yaml:"client_secret"`

	// SecretHash is the bcrypt hash of the client secret, the alternative
	// to Secret: the file then holds no secret, at the price of a bcrypt
	// comparison (cached by the caller) to authenticate the client. It
	// cannot verify HS256 request objects.
	SecretHash string `yaml:"client_secret_hash"`

	// TokenEndpointAuthMethods are the ways the client may authenticate
	// (OIDC Core §9): a subset of client_secret_basic, client_secret_post,
	// private_key_jwt, tls_client_auth and self_signed_tls_client_auth
	// (RFC 8705), without repeats. Default [client_secret_basic].
	TokenEndpointAuthMethods []string `yaml:"token_endpoint_auth_methods"`

	// DeliveryMode is backchannel_token_delivery_mode (CIBA Core §4):
	// "poll", "ping" or "push". Required, except for a client with
	// DeviceAuthorization, which then uses the device grant only.
	DeliveryMode string `yaml:"backchannel_token_delivery_mode"`

	// DeviceAuthorization lets the client use the device authorization
	// grant (RFC 8628): POST /device_authorization and the device_code
	// grant. Default false. With token_endpoint_auth_methods [none] the
	// client is public (a TV app or CLI that cannot keep a secret).
	DeviceAuthorization bool `yaml:"device_authorization"`

	// NotificationEndpoint is backchannel_client_notification_endpoint
	// (CIBA Core §4): where ping notifications and push results are
	// POSTed. Required for ping and push (an absolute http or https URL;
	// CIBA asks for https beyond development), must be empty for poll.
	NotificationEndpoint string `yaml:"backchannel_client_notification_endpoint"`

	// UserCodeParameter is backchannel_user_code_parameter (CIBA Core §4):
	// requests must carry the user's user_code. Default false.
	UserCodeParameter bool `yaml:"backchannel_user_code_parameter"`

	// RequestSigningAlg is
	// backchannel_authentication_request_signing_alg (CIBA Core §4, §7.1.1):
	// when set, the client MUST send its parameters in a request object
	// signed with this alg, and plain form parameters are refused. One of
	// RS256, PS256 or ES256 (then JWKS or JWKSURI is required), or HS256
	// (only with AllowHS256RequestObject). Default empty: request objects
	// are optional.
	RequestSigningAlg string `yaml:"backchannel_authentication_request_signing_alg"`

	// AllowHS256RequestObject is a legacy switch that accepts request
	// objects signed with HS256 under the plain client secret, as older
	// clients do. CIBA Core §7.1.1 asks for asymmetric signatures: with
	// HS256 anyone holding the secret (including cibaproxy and whoever
	// reads its configuration) can forge the client's requests. Needs a
	// plain Secret, not a SecretHash. Default false.
	AllowHS256RequestObject bool `yaml:"allow_hs256_request_object"`

	// JWKS is the client's inline JWK Set (RFC 7517 §5) of public keys,
	// for private_key_jwt and signed request objects, as JSON. It may be
	// written as a YAML mapping or as a JSON string. It must hold at least
	// one key and no private key. Not together with JWKSURI.
	JWKS json.RawMessage `yaml:"jwks"`

	// JWKSURI is the URL of the client's JWK Set, the alternative to JWKS
	// for clients that rotate keys: an absolute http or https URL.
	JWKSURI string `yaml:"jwks_uri"`

	// AllowedNetworks are the CIDR networks the client's backchannel
	// authentication requests may come from (the consumption device's
	// address, see [Limits.TrustedProxies]); a request from elsewhere is
	// refused with unauthorized_client. Empty (default): any address.
	AllowedNetworks []string `yaml:"allowed_networks"`

	// SkipValidation exempts the client's requests from the validation
	// hook ([Validation]), e.g. an internal client already trusted.
	// Default false: with a hook configured, every request is sent to it.
	SkipValidation bool `yaml:"skip_validation"`

	// ActsForUser marks the client as a delegate: software (an AI agent,
	// say) acting on the user's behalf. The approval page, the webhook and
	// the e-mail tell the user "<client name> acting on your behalf asks
	// to …", and its access tokens carry an act claim naming it
	// ({"act":{"sub":"<client_id>"}}, RFC 8693 §4.1). Local upstream
	// only; not for a public client. Default false.
	ActsForUser bool `yaml:"acts_for_user"`

	// Scopes are the scopes the client may request; another is refused
	// with invalid_scope. When set it must include "openid", which every
	// CIBA request carries (CIBA Core §7.1). Empty (default): any scope
	// may be requested; the local issuer grants the standard ones and
	// [LocalUpstream.Scopes] and drops the others, the other upstreams
	// pass them on to the provider.
	Scopes []string `yaml:"scopes"`

	// AuthorizationDetailsTypes are the authorization_details types (RFC
	// 9396) the client may send at bc-authorize; each must be one of
	// authorization_details.types. Empty (default): the client may send
	// none, and a request with authorization_details is refused.
	AuthorizationDetailsTypes []string `yaml:"authorization_details_types"`

	// Resources are the resource indicators (RFC 8707, the resource
	// parameter: absolute URIs without a fragment) and audiences (the
	// audience parameter of Auth0-style clients) the client may ask for
	// at bc-authorize; another value is invalid_target. With the local
	// upstream they become the access token's aud. Empty (default): the
	// client may send neither.
	Resources []string `yaml:"resources"`

	// Upstream are the client's credentials at the upstream identity
	// provider (upstream type "oidc"), with which cibaproxy exchanges the
	// user's authorization code so that the tokens are issued to this
	// client. Default: the client's own client_id and plain client_secret.
	Upstream UpstreamCredentials `yaml:"upstream_credentials"`

	// TLSSubjectDN is tls_client_auth_subject_dn (RFC 8705 §2.1.2): the
	// subject distinguished name (RFC 4514 string form, as Go prints it,
	// e.g. "CN=client,O=Example") the client's certificate must carry.
	// With tls_client_auth exactly one of TLSSubjectDN, TLSSANDNS,
	// TLSSANURI and TLSSANEmail is required.
	TLSSubjectDN string `yaml:"tls_client_auth_subject_dn"`

	// TLSSANDNS is tls_client_auth_san_dns: a dNSName SAN the
	// certificate must carry.
	TLSSANDNS string `yaml:"tls_client_auth_san_dns"`

	// TLSSANURI is tls_client_auth_san_uri: a uniformResourceIdentifier
	// SAN the certificate must carry.
	TLSSANURI string `yaml:"tls_client_auth_san_uri"`

	// TLSSANEmail is tls_client_auth_san_email: an rfc822Name SAN the
	// certificate must carry.
	TLSSANEmail string `yaml:"tls_client_auth_san_email"`

	// CertBoundAccessTokens is tls_client_certificate_bound_access_tokens
	// (RFC 8705 §3.4): the client's access tokens are bound to the client
	// certificate it presents (cnf.x5t#S256 in the token, RFC 8705 §3.1),
	// and its auth_req_id, device_code and refresh requests must be made
	// over mutual TLS with a certificate; an auth_req_id is redeemed only
	// with the certificate it was requested with. Any certificate the
	// client proves it holds counts, also for a private_key_jwt client
	// (RFC 8705 §3). Needs tls.cert_file or mtls_proxy, and the local
	// upstream: tokens from an identity provider cannot be bound here.
	// Default false; always on for a FAPI-CIBA client with a mutual-TLS
	// method under the local upstream ([Config.CertBound]).
	CertBoundAccessTokens bool `yaml:"tls_client_certificate_bound_access_tokens"`

	// DPoPBoundAccessTokens is dpop_bound_access_tokens (RFC 9449 §5.2):
	// each token request of the client must carry a DPoP proof (a request
	// without one is refused with invalid_dpop_proof), and its access
	// tokens are bound to the proof's key (cnf.jkt, token_type DPoP). Needs
	// the local upstream (tokens from an identity provider cannot be bound
	// here) and poll or ping (push delivers tokens with no request to carry
	// a proof). Default false: a client may still send proofs.
	DPoPBoundAccessTokens bool `yaml:"dpop_bound_access_tokens"`

	// Introspection lets the client call the token introspection endpoint
	// (RFC 7662, /introspect) to check the local issuer's access and
	// refresh tokens: set it for a resource server, which is configured as
	// a client with credentials. A client that only introspects needs no
	// backchannel_token_delivery_mode. Needs the local upstream; not for a
	// public client. Default false.
	Introspection bool `yaml:"introspection"`

	// Profile is the security profile the client is held to: empty
	// (default) or "fapi-ciba" ([ProfileFAPICIBA]), which requires PS256
	// or ES256 signed requests, private_key_jwt (or mutual TLS), poll or
	// ping, and request objects valid for at most 60 minutes (see
	// docs/fapi.md). fapi.ciba: true applies it to every client.
	Profile string `yaml:"profile"`

	// Checked is the client as internal/clientmeta validated it, for
	// building its registration (clientauth.NewRegistration) without
	// checking again. Set by [Load]; nil while the client has problems.
	Checked *clientmeta.Valid `yaml:"-"`
}

// ClientMetadata describes client cl for the client rules of
// internal/clientmeta: its own settings, plus what the server decides for
// it (fapi.ciba, and certificate binding as [Config.CertBound] implies it).
func (c *Config) ClientMetadata(cl *Client) clientmeta.Metadata {
	return clientmeta.Metadata{
		ID:                      cl.ID,
		Name:                    cl.Name,
		Secret:                  cl.Secret,
		SecretHash:              cl.SecretHash,
		Methods:                 cl.TokenEndpointAuthMethods,
		DeliveryMode:            cl.DeliveryMode,
		NotificationEndpoint:    cl.NotificationEndpoint,
		DeviceAuthorization:     cl.DeviceAuthorization,
		UserCodeParameter:       cl.UserCodeParameter,
		RequestSigningAlg:       cl.RequestSigningAlg,
		AllowHS256RequestObject: cl.AllowHS256RequestObject,
		JWKS:                    cl.JWKS,
		JWKSURI:                 cl.JWKSURI,
		Scopes:                  cl.Scopes,
		AuthzDetailsTypes:       cl.AuthorizationDetailsTypes,
		Resources:               cl.Resources,
		ServerAuthzDetailsTypes: c.AuthorizationDetails.TypeNames(),
		TLSSubjectDN:            cl.TLSSubjectDN,
		TLSSANDNS:               cl.TLSSANDNS,
		TLSSANURI:               cl.TLSSANURI,
		TLSSANEmail:             cl.TLSSANEmail,
		Profile:                 cl.Profile,
		ServerFAPI:              c.FAPI.CIBA,
		SenderConstrained:       c.FAPI.SenderConstrainedTokens,
		SkipValidation:          cl.SkipValidation,
		ActsForUser:             cl.ActsForUser,
		ServerActsForUser:       c.Upstream.Type == UpstreamLocal,
		CertBoundAccessTokens:   c.CertBound(cl),
		DPoPBoundAccessTokens:   cl.DPoPBoundAccessTokens,
		Introspection:           cl.Introspection,
	}
}
