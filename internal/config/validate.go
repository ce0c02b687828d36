package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/crypto/bcrypt"
)

// Defaults of the settings that have one.
const (
	defaultListen          = "127.0.0.1:8080"
	defaultStorePath       = "./data/cibaproxy.db"
	defaultExpiry          = 5 * time.Minute
	defaultMaxExpiry       = 30 * time.Minute
	defaultInterval        = 5 * time.Second
	defaultExpiredGrace    = 10 * time.Minute
	defaultBindingMax      = 64
	defaultAccessTokenTTL  = 10 * time.Minute
	defaultIDTokenTTL      = 10 * time.Minute
	defaultRefreshTokenTTL = 24 * time.Hour
	defaultWebhookTimeout  = 5 * time.Second

	maxLongPoll   = 60 * time.Second
	minInterval   = time.Second
	maxBindingMax = 256
	maxKeyID      = 255
	maxSubject    = 255
)

// reservedClaims are set by cibaproxy itself; a user's claims must not
// override them (OIDC Core §2, §3.1.3.6; CIBA Core §7.4 for auth_req_id).
var reservedClaims = []string{
	"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "nonce", "auth_time",
	"azp", "at_hash", "c_hash", "rt_hash", "sid", "scope", "client_id",
	"urn:openid:params:jwt:claim:auth_req_id",
}

// validator fills in defaults and checks every rule, reporting problems
// with the path and line of the value concerned.
type validator struct {
	col    *collector
	src    *source
	dir    string
	lookup lookupFunc
}

func (v *validator) fail(path, format string, args ...any) {
	v.col.add(v.src, path, format, args...)
}

// userAt is a user with the file and path it was read from.
type userAt struct {
	user *User
	src  *source
	path string
}

// defaults fills in every setting left empty or absent. Settings where zero
// means something (long_poll, refresh_token_ttl, expired_grace) get their
// default only when absent.
func (v *validator) defaults(c *Config) {
	str := func(s *string, def string) {
		if *s == "" {
			*s = def
		}
	}
	dur := func(d *time.Duration, path string, def time.Duration) {
		if !v.src.set[path] {
			*d = def
		}
	}
	str(&c.Listen, defaultListen)
	str(&c.Log.Level, LogInfo)
	str(&c.Log.Format, LogText)
	str(&c.Store.Type, StoreEmbedded)
	if c.Store.Type == StoreEmbedded {
		str(&c.Store.Path, defaultStorePath)
	}
	if c.Store.Type == StoreRedis {
		v.redisDefaults(&c.Store.Redis)
	}
	str(&c.Upstream.Type, UpstreamLocal)
	c.Upstream.Local.UsersFile = v.resolve(c.Upstream.Local.UsersFile)
	if c.Upstream.Type == UpstreamOIDC || c.Upstream.Type == UpstreamCIBA {
		v.oidcDefaults(c)
	}

	dur(&c.CIBA.DefaultExpiry, "ciba.default_expiry", defaultExpiry)
	dur(&c.CIBA.MaxExpiry, "ciba.max_expiry", defaultMaxExpiry)
	dur(&c.CIBA.Interval, "ciba.interval", defaultInterval)
	dur(&c.CIBA.ExpiredGrace, "ciba.expired_grace", defaultExpiredGrace)
	if !v.src.set["ciba.binding_message_max"] {
		c.CIBA.BindingMessageMax = defaultBindingMax
	}

	dur(&c.Tokens.AccessTokenTTL, "tokens.access_token_ttl", defaultAccessTokenTTL)
	dur(&c.Tokens.IDTokenTTL, "tokens.id_token_ttl", defaultIDTokenTTL)
	dur(&c.Tokens.RefreshTokenTTL, "tokens.refresh_token_ttl", defaultRefreshTokenTTL)
	c.Tokens.SigningKeyFile = v.resolve(c.Tokens.SigningKeyFile)

	dur(&c.Channels.Webhook.Timeout, "channels.webhook.timeout", defaultWebhookTimeout)
	v.emailDefaults(&c.Channels.Email)
	v.limitsDefaults(&c.Limits)
	v.tlsDefaults(c)
	v.deviceDefaults(&c.Device)

	for i := range c.Clients {
		cl := &c.Clients[i]
		str(&cl.Name, cl.ID)
		if len(cl.TokenEndpointAuthMethods) == 0 {
			cl.TokenEndpointAuthMethods = []string{AuthClientSecretBasic}
		}
	}
}

// validate checks every rule.
func (v *validator) validate(c *Config) {
	if c.Issuer == "" {
		v.fail("issuer", "required: the issuer URL clients see in tokens, e.g. https://ciba.example.com")
	} else if msg := checkIssuer(c.Issuer); msg != "" {
		v.fail("issuer", "%s", msg)
	}
	v.checkListen("listen", c.Listen)
	if c.Metrics.Listen != "" && c.Metrics.Listen != MetricsOnMain {
		v.checkListen("metrics.listen", c.Metrics.Listen)
		if c.Metrics.Listen == c.Listen {
			v.fail("metrics.listen", "must differ from listen (%s); write %q to serve /metrics on the main listener", c.Listen, MetricsOnMain)
		}
	}
	v.oneOf("log.level", c.Log.Level, LogDebug, LogInfo, LogWarn, LogError)
	v.oneOf("log.format", c.Log.Format, LogText, LogJSON)
	v.checkStore(&c.Store)
	v.checkUpstream(&c.Upstream)
	v.checkCIBA(&c.CIBA)
	v.checkTokens(&c.Tokens)
	v.checkWebhook(&c.Channels.Webhook)
	v.checkEmail(&c.Channels.Email, c.Channels.Webhook.URL != "")
	v.checkClients(c.Clients)
	v.checkFAPI(c)
	v.checkTLS(c)
	v.checkOutbound(c)
	v.checkLimits(c)
	v.checkDevice(c)
	v.checkTracing(&c.Tracing)
	v.checkValidation(c)
	v.checkPages(&c.Pages)
	switch c.Upstream.Type {
	case UpstreamOIDC:
		v.checkOIDC(c)
	case UpstreamCIBA:
		v.checkCIBAUpstream(c)
	}
}

// checkIssuer returns why s is not an issuer identifier, or "": an
// absolute http(s) URL without query or fragment (OIDC Discovery §3). The
// issuer is public, so the message quotes it.
func checkIssuer(s string) string {
	if msg := checkHTTPURL(s); msg != "" {
		return fmt.Sprintf("%s, got %q", msg, s)
	}
	if u, _ := url.Parse(s); u.RawQuery != "" || u.ForceQuery {
		return fmt.Sprintf("must not have a query (\"?…\"), got %q", s)
	}
	return ""
}

// checkHTTPURL returns why s is not an absolute http(s) URL without
// fragment (a fragment is never sent to the server), or "". The message
// does not quote s: a webhook or notification URL may carry a token.
func checkHTTPURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Sprintf("not a valid URL: %v", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return "must be an absolute http or https URL"
	}
	if u.Fragment != "" || strings.Contains(s, "#") {
		return "must not have a fragment (\"#…\")"
	}
	return ""
}

func (v *validator) checkListen(path, addr string) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		v.fail(path, "must be host:port, e.g. 127.0.0.1:8080 or :8080, got %q", addr)
		return
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		v.fail(path, "the port must be a number from 0 to 65535, got %q", port)
	}
	if strings.ContainsAny(host, " /") {
		v.fail(path, "invalid host %q", host)
	}
}

// oneOf checks that value is one of allowed.
func (v *validator) oneOf(path, value string, allowed ...string) bool {
	if slices.Contains(allowed, value) {
		return true
	}
	v.fail(path, "must be one of %s, got %q", strings.Join(allowed, ", "), value)
	return false
}

func (v *validator) checkStore(s *Store) {
	switch s.Type {
	case StoreEmbedded:
	case StoreMemory:
		if s.Path != "" {
			v.fail("store.path", "must be empty for the memory store, which keeps nothing on disk")
		}
	case StoreRedis:
		v.checkRedis(s)
	default:
		v.oneOf("store.type", s.Type, StoreEmbedded, StoreRedis, StoreMemory)
	}
}

func (v *validator) checkUpstream(u *Upstream) {
	switch u.Type {
	case UpstreamLocal:
		v.checkLocal(&u.Local)
	case UpstreamOIDC, UpstreamCIBA:
		// checked with the clients, in checkOIDC and checkCIBAUpstream
		if len(u.Local.Scopes) > 0 {
			v.fail("upstream.local.scopes", "not used with the %s upstream, whose provider decides the scopes it grants; remove it, or list a client's scopes in clients[].scopes", u.Type)
		}
	default:
		v.fail("upstream.type", "must be %q, %q or %q, got %q", UpstreamLocal, UpstreamOIDC, UpstreamCIBA, u.Type)
	}
}

// checkLocal merges the users file into Users, fills in subjects and checks
// every user.
func (v *validator) checkLocal(l *LocalUpstream) {
	seen := make(map[string]bool)
	for j, s := range l.Scopes {
		sp := joinIndex("upstream.local.scopes", j)
		switch {
		case !isScopeToken(s):
			v.fail(sp, "invalid scope %q: a scope is non-empty, without spaces, quotes or backslashes (RFC 6749 §3.3)", s)
		case seen[s]:
			v.fail(sp, "scope %q is listed twice", s)
		}
		seen[s] = true
	}
	users := make([]userAt, len(l.Users))
	for i := range l.Users {
		users[i] = userAt{user: &l.Users[i], src: v.src, path: joinIndex("upstream.local.users", i)}
	}
	fileOK := true
	if l.UsersFile != "" {
		var fromFile []userAt
		fromFile, fileOK = v.readUsersFile(l.UsersFile)
		users = append(users, fromFile...)
	}
	if len(users) == 0 && fileOK {
		v.fail("upstream.local.users", "at least one user is required, in users or in users_file")
		return
	}

	byName := make(map[string]string)
	bySubject := make(map[string]string)
	merged := make([]User, 0, len(users))
	for _, ua := range users {
		u := ua.user
		fail := func(key, format string, args ...any) {
			v.col.add(ua.src, joinKey(ua.path, key), format, args...)
		}
		dupName := false
		if u.Username == "" {
			fail("username", "required: the name clients send as login_hint")
		} else if first, dup := byName[u.Username]; dup {
			fail("username", "duplicate username %q (also %s)", u.Username, first)
			dupName = true
		} else {
			byName[u.Username] = ua.path
		}
		defaulted := u.Subject == ""
		if defaulted {
			u.Subject = u.Username
		}
		// A subject defaulted from a duplicate username is the same
		// mistake; report it once.
		if u.Subject != "" && !(defaulted && dupName) {
			if msg := checkSubject(u.Subject); msg != "" {
				fail("subject", "%s", msg)
			} else if first, dup := bySubject[u.Subject]; dup {
				fail("subject", "duplicate subject %q (also %s); a subject must identify one user", u.Subject, first)
			} else {
				bySubject[u.Subject] = ua.path
			}
		}
		if u.PasswordHash == "" {
			fail("password_hash", "required: the bcrypt hash of the user's password")
		} else if msg := checkBcrypt(u.PasswordHash); msg != "" {
			fail("password_hash", "%s", msg)
		}
		if u.UserCodeHash != "" {
			if msg := checkBcrypt(u.UserCodeHash); msg != "" {
				fail("user_code_hash", "%s", msg)
			}
		}
		for _, name := range reservedClaims {
			if _, ok := u.Claims[name]; ok {
				fail(joinKey("claims", name), "claim %q is set by cibaproxy and cannot be configured", name)
			}
		}
		if _, err := json.Marshal(u.Claims); err != nil {
			fail("claims", "cannot be represented as JSON: %v", err)
		}
		merged = append(merged, *u)
	}
	l.Users = merged
}

// checkSubject applies OIDC Core §2: at most 255 ASCII characters.
func checkSubject(s string) string {
	if len(s) > maxSubject {
		return fmt.Sprintf("must be at most %d characters (OpenID Connect Core §2), got %d", maxSubject, len(s))
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return fmt.Sprintf("must be printable ASCII (OpenID Connect Core §2), got %q", s)
		}
	}
	return ""
}

// checkBcrypt returns why h is not a bcrypt hash, or "". It never quotes h.
func checkBcrypt(h string) string {
	if _, err := bcrypt.Cost([]byte(h)); err != nil || len(h) != 60 {
		return "not a bcrypt hash: expected 60 characters like \"$2a$10$…\" (make one with `printf %s 'secret' | cibaproxy hash-secret`)"
	}
	return ""
}

func (v *validator) checkCIBA(c *CIBA) {
	if c.DefaultExpiry <= 0 {
		v.fail("ciba.default_expiry", "must be positive, got %s", c.DefaultExpiry)
	}
	if c.MaxExpiry < c.DefaultExpiry {
		v.fail("ciba.max_expiry", "must be at least default_expiry (%s), got %s", c.DefaultExpiry, c.MaxExpiry)
	}
	if c.Interval < minInterval {
		v.fail("ciba.interval", "must be at least %s, got %s", minInterval, c.Interval)
	} else if c.DefaultExpiry > 0 && c.Interval >= c.DefaultExpiry {
		v.fail("ciba.interval", "must be shorter than default_expiry (%s), or a request expires before its first poll; got %s", c.DefaultExpiry, c.Interval)
	}
	if c.LongPoll < 0 || c.LongPoll > maxLongPoll {
		v.fail("ciba.long_poll", "must be between 0 (off) and %s, got %s", maxLongPoll, c.LongPoll)
	}
	if c.ExpiredGrace < 0 {
		v.fail("ciba.expired_grace", "must not be negative, got %s", c.ExpiredGrace)
	}
	if c.BindingMessageMax < 1 || c.BindingMessageMax > maxBindingMax {
		v.fail("ciba.binding_message_max", "must be between 1 and %d, got %d", maxBindingMax, c.BindingMessageMax)
	}
}

func (v *validator) checkTokens(t *Tokens) {
	if t.AccessTokenTTL <= 0 {
		v.fail("tokens.access_token_ttl", "must be positive, got %s", t.AccessTokenTTL)
	}
	if t.IDTokenTTL <= 0 {
		v.fail("tokens.id_token_ttl", "must be positive, got %s", t.IDTokenTTL)
	}
	if t.RefreshTokenTTL < 0 {
		v.fail("tokens.refresh_token_ttl", "must not be negative (0 issues no refresh tokens), got %s", t.RefreshTokenTTL)
	}
	if t.SigningKeyFile != "" {
		data, err := readRegularFile(t.SigningKeyFile)
		if err != nil {
			v.fail("tokens.signing_key_file", "cannot read the signing key: %v", err)
		} else if key, kid, err := parseSigningKey(data); err != nil {
			v.fail("tokens.signing_key_file", "%s: %v", t.SigningKeyFile, err)
		} else {
			t.SigningKey, t.SigningKeyID, t.SigningKeyAlg = key, kid, jwkAlg(data)
		}
	}
	ids := make(map[string]int)
	for i := range t.EncryptionKeys {
		k := &t.EncryptionKeys[i]
		p := joinIndex("tokens.encryption_keys", i)
		switch {
		case k.ID == "":
			v.fail(joinKey(p, "id"), "required: the name of the key inside encrypted values")
		case len(k.ID) > maxKeyID:
			v.fail(joinKey(p, "id"), "must be at most %d bytes, got %d", maxKeyID, len(k.ID))
		default:
			if first, dup := ids[k.ID]; dup {
				v.fail(joinKey(p, "id"), "duplicate id %q (also tokens.encryption_keys[%d])", k.ID, first)
			}
			ids[k.ID] = i
		}
		if k.Key == "" {
			v.fail(joinKey(p, "key"), "required: the base64 of 32 random bytes, e.g. from `openssl rand -base64 32`")
			continue
		}
		b, err := decodeKey(k.Key)
		switch {
		case err != nil:
			v.fail(joinKey(p, "key"), "not valid base64; expected the base64 of 32 random bytes, e.g. from `openssl rand -base64 32`")
		case len(b) != 32:
			v.fail(joinKey(p, "key"), "must decode to exactly 32 bytes (AES-256), got %d", len(b))
		default:
			k.Secret = b
		}
	}
}

func (v *validator) checkWebhook(w *Webhook) {
	if w.URL != "" {
		if msg := checkHTTPURL(w.URL); msg != "" {
			v.fail("channels.webhook.url", "%s", msg)
		}
	}
	if w.Timeout <= 0 {
		v.fail("channels.webhook.timeout", "must be positive, got %s", w.Timeout)
	}
}

var authMethods = []string{AuthClientSecretBasic, AuthClientSecretPost, AuthPrivateKeyJWT, AuthTLSClient, AuthSelfSignedTLSClient}

func (v *validator) checkClients(clients []Client) {
	if len(clients) == 0 {
		v.fail("clients", "at least one client is required")
		return
	}
	ids := make(map[string]int)
	for i := range clients {
		p := joinIndex("clients", i)
		if clients[i].ID != "" {
			if first, dup := ids[clients[i].ID]; dup {
				v.fail(joinKey(p, "client_id"), "duplicate client_id %q (also clients[%d])", clients[i].ID, first)
			} else {
				ids[clients[i].ID] = i
			}
		}
		v.checkClient(&clients[i], p)
		v.checkDeviceClient(&clients[i], p)
	}
}

func (v *validator) checkClient(c *Client, p string) {
	at := func(key string) string { return joinKey(p, key) }

	if c.ID == "" {
		v.fail(at("client_id"), "required")
	} else if !isVSChars(c.ID) {
		v.fail(at("client_id"), "must be printable ASCII (RFC 6749 Appendix A.1), got %q", c.ID)
	}

	seen := make(map[string]bool)
	for j, m := range c.TokenEndpointAuthMethods {
		mp := joinIndex(at("token_endpoint_auth_methods"), j)
		if !slices.Contains(authMethods, m) && m != AuthNone {
			v.fail(mp, "must be one of %s, got %q", strings.Join(authMethods, ", "), m)
		} else if seen[m] {
			v.fail(mp, "%q is listed twice", m)
		}
		seen[m] = true
	}

	switch {
	case c.UsesSecret():
		if c.Secret != "" && c.SecretHash != "" {
			v.fail(at("client_secret_hash"), "set client_secret or client_secret_hash, not both")
		} else if c.Secret == "" && c.SecretHash == "" {
			v.fail(at("client_secret"), "required by client_secret_basic and client_secret_post: set client_secret or client_secret_hash")
		}
	default:
		// Only private_key_jwt: a secret would be unused, and a stale
		// secret in the file is a liability. The one use left is the
		// HS256 legacy switch, which needs the plain secret.
		if c.Secret != "" && !c.AllowHS256RequestObject {
			v.fail(at("client_secret"), "not allowed: no client_secret_* method is listed in token_endpoint_auth_methods")
		}
		if c.SecretHash != "" {
			v.fail(at("client_secret_hash"), "not allowed: no client_secret_* method is listed in token_endpoint_auth_methods")
		}
	}
	if c.SecretHash != "" {
		if msg := checkBcrypt(c.SecretHash); msg != "" {
			v.fail(at("client_secret_hash"), "%s", msg)
		}
	}

	switch c.DeliveryMode {
	case "":
		if !c.DeviceAuthorization {
			v.fail(at("backchannel_token_delivery_mode"), "required: poll, ping or push (CIBA Core §4)")
		}
	case DeliveryPoll:
		if c.NotificationEndpoint != "" {
			v.fail(at("backchannel_client_notification_endpoint"), "must be empty in poll mode, which sends no notifications (CIBA Core §4)")
		}
	case DeliveryPing, DeliveryPush:
		if c.NotificationEndpoint == "" {
			v.fail(at("backchannel_client_notification_endpoint"), "required in %s mode (CIBA Core §4)", c.DeliveryMode)
		} else if msg := checkHTTPURL(c.NotificationEndpoint); msg != "" {
			v.fail(at("backchannel_client_notification_endpoint"), "%s", msg)
		}
	default:
		v.oneOf(at("backchannel_token_delivery_mode"), c.DeliveryMode, DeliveryPoll, DeliveryPing, DeliveryPush)
	}

	hasKeys := len(c.JWKS) > 0 || c.JWKSURI != ""
	if len(c.JWKS) > 0 && c.JWKSURI != "" {
		v.fail(at("jwks_uri"), "set jwks or jwks_uri, not both")
	}
	var keys []jose.JSONWebKey
	if len(c.JWKS) > 0 {
		keys = checkJWKS(c.JWKS, func(sub, format string, args ...any) {
			path := at("jwks")
			if sub != "" {
				path = joinKey(path, sub)
			}
			v.fail(path, format, args...)
		})
	}
	if c.JWKSURI != "" {
		if msg := checkHTTPURL(c.JWKSURI); msg != "" {
			v.fail(at("jwks_uri"), "%s", msg)
		}
	}
	if slices.Contains(c.TokenEndpointAuthMethods, AuthPrivateKeyJWT) && !hasKeys {
		v.fail(at("token_endpoint_auth_methods"), "private_key_jwt needs the client's public keys: set jwks or jwks_uri")
	}

	switch alg := c.RequestSigningAlg; alg {
	case "":
	case "RS256", "PS256", "ES256":
		if !hasKeys {
			v.fail(at("backchannel_authentication_request_signing_alg"), "%s needs the client's public keys: set jwks or jwks_uri", alg)
		} else if len(c.JWKS) > 0 && len(keys) > 0 && !slices.ContainsFunc(keys, func(k jose.JSONWebKey) bool { return keyFitsAlg(k, alg) }) {
			v.fail(at("backchannel_authentication_request_signing_alg"), "jwks holds no signing key usable with %s", alg)
		}
	case "HS256":
		if !c.AllowHS256RequestObject {
			v.fail(at("backchannel_authentication_request_signing_alg"), "HS256 needs allow_hs256_request_object: true; CIBA Core §7.1.1 asks for an asymmetric signature (RS256, PS256 or ES256)")
		}
	default:
		v.fail(at("backchannel_authentication_request_signing_alg"), "must be RS256, PS256 or ES256 (or HS256 with allow_hs256_request_object), got %q", alg)
	}
	if c.AllowHS256RequestObject && c.RequestSigningAlg != "" && c.RequestSigningAlg != "HS256" {
		v.fail(at("allow_hs256_request_object"), "contradicts backchannel_authentication_request_signing_alg %s, which every request must be signed with", c.RequestSigningAlg)
	}
	if c.AllowHS256RequestObject && c.Secret == "" {
		v.fail(at("allow_hs256_request_object"), "needs a plain client_secret to check HS256 signatures; a client_secret_hash cannot be used")
	}

	scopes := make(map[string]bool)
	for j, s := range c.Scopes {
		sp := joinIndex(at("scopes"), j)
		switch {
		case !isScopeToken(s):
			v.fail(sp, "invalid scope %q: a scope is non-empty, without spaces, quotes or backslashes (RFC 6749 §3.3)", s)
		case scopes[s]:
			v.fail(sp, "scope %q is listed twice", s)
		}
		scopes[s] = true
	}
	if len(c.Scopes) > 0 && !scopes["openid"] {
		v.fail(at("scopes"), "must include openid, which every CIBA request carries (CIBA Core §7.1); leave scopes out to allow any scope")
	}
}

// isVSChars reports whether s is non-empty printable ASCII (RFC 6749
// Appendix A: VSCHAR = %x20-7E).
func isVSChars(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return s != ""
}

// isScopeToken reports whether s is a scope-token (RFC 6749 §3.3:
// 1*( %x21 / %x23-5B / %x5D-7E )).
func isScopeToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return s != ""
}
