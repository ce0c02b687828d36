package config

import (
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/clientmeta"
	"github.com/cibaproxy/cibaproxy/internal/dpop"
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
	dur(&c.Tokens.DPoPWindow, "tokens.dpop_window", dpop.DefaultWindow)
	c.Tokens.SigningKeyFile = v.resolve(c.Tokens.SigningKeyFile)

	dur(&c.Channels.Webhook.Timeout, "channels.webhook.timeout", defaultWebhookTimeout)
	v.emailDefaults(&c.Channels.Email)
	v.webPushDefaults(&c.Channels.WebPush)
	v.channelsDefaults(&c.Channels)
	v.limitsDefaults(&c.Limits)
	v.tlsDefaults(c)
	v.deviceDefaults(&c.Device)
	v.authzDetailsDefaults(&c.AuthorizationDetails)
	v.approvalDefaults(&c.Approval)

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
	} else if strings.HasSuffix(c.Issuer, "/") {
		v.fail("issuer", "must not end with \"/\", got %q: every endpoint URL is the issuer followed by its path (%s/token), and clients compare the iss of each token with the issuer byte for byte (OIDC Core §3.1.3.7, OIDC Discovery §4.3), so cibaproxy does not drop the slash for you; write %q",
			c.Issuer, strings.TrimRight(c.Issuer, "/"), strings.TrimRight(c.Issuer, "/"))
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
	v.checkLoginHintIssuers(&c.CIBA)
	v.checkHTTP(&c.HTTP)
	v.checkTokens(&c.Tokens)
	v.checkWebhook(&c.Channels.Webhook)
	v.checkEmail(&c.Channels.Email)
	v.checkWebPush(c)
	v.checkOrder(&c.Channels)
	v.checkClients(c)
	v.checkFAPI(c)
	v.checkTLS(c)
	v.checkDPoP(c)
	v.checkIntrospection(c)
	v.checkOutbound(c)
	v.checkLimits(c)
	v.checkDevice(c)
	v.checkTracing(&c.Tracing)
	v.checkValidation(c)
	v.checkPages(&c.Pages)
	v.checkAuthzDetails(c)
	v.checkApproval(c)
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
	if msg := clientmeta.CheckHTTPURL(s); msg != "" {
		return fmt.Sprintf("%s, got %q", msg, s)
	}
	if u, _ := url.Parse(s); u.RawQuery != "" || u.ForceQuery {
		return fmt.Sprintf("must not have a query (\"?…\"), got %q", s)
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
	v.checkLocalScopes(l.Scopes)
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
	seen := userNames{byName: make(map[string]string), bySubject: make(map[string]string)}
	merged := make([]User, 0, len(users))
	for _, ua := range users {
		v.checkUserNames(ua, &seen)
		v.checkUserSecrets(ua)
		merged = append(merged, *ua.user)
	}
	l.Users = merged
}

// checkLocalScopes checks upstream.local.scopes: scope-tokens, each once.
func (v *validator) checkLocalScopes(scopes []string) {
	seen := make(map[string]bool)
	for j, s := range scopes {
		sp := joinIndex("upstream.local.scopes", j)
		switch {
		case !clientmeta.IsScopeToken(s):
			v.fail(sp, "invalid scope %q: a scope is non-empty, without spaces, quotes or backslashes (RFC 6749 §3.3)", s)
		case seen[s]:
			v.fail(sp, "scope %q is listed twice", s)
		}
		seen[s] = true
	}
}

// userNames are the usernames and subjects seen so far, with the path of
// the user that has each.
type userNames struct {
	byName, bySubject map[string]string
}

// failUser reports a problem at key of user ua.
func (v *validator) failUser(ua userAt, key, format string, args ...any) {
	v.col.add(ua.src, joinKey(ua.path, key), format, args...)
}

// checkUserNames checks a user's username and subject, unique among the
// users seen, and defaults the subject to the username.
func (v *validator) checkUserNames(ua userAt, seen *userNames) {
	u := ua.user
	dupName := false
	if u.Username == "" {
		v.failUser(ua, "username", "required: the name clients send as login_hint")
	} else if first, dup := seen.byName[u.Username]; dup {
		v.failUser(ua, "username", "duplicate username %q (also %s)", u.Username, first)
		dupName = true
	} else {
		seen.byName[u.Username] = ua.path
	}
	defaulted := u.Subject == ""
	if defaulted {
		u.Subject = u.Username
	}
	// A subject defaulted from a duplicate username is the same mistake;
	// report it once.
	if u.Subject == "" || defaulted && dupName {
		return
	}
	if msg := checkSubject(u.Subject); msg != "" {
		v.failUser(ua, "subject", "%s", msg)
	} else if first, dup := seen.bySubject[u.Subject]; dup {
		v.failUser(ua, "subject", "duplicate subject %q (also %s); a subject must identify one user", u.Subject, first)
	} else {
		seen.bySubject[u.Subject] = ua.path
	}
}

// checkUserSecrets checks a user's password and user code hashes, and
// claims.
func (v *validator) checkUserSecrets(ua userAt) {
	u := ua.user
	if u.PasswordHash == "" {
		v.failUser(ua, "password_hash", "required: the bcrypt hash of the user's password")
	} else if msg := clientmeta.CheckBcrypt(u.PasswordHash); msg != "" {
		v.failUser(ua, "password_hash", "%s", msg)
	}
	if u.UserCodeHash != "" {
		if msg := clientmeta.CheckBcrypt(u.UserCodeHash); msg != "" {
			v.failUser(ua, "user_code_hash", "%s", msg)
		}
	}
	for _, name := range reservedClaims {
		if _, ok := u.Claims[name]; ok {
			v.failUser(ua, joinKey("claims", name), "claim %q is set by cibaproxy and cannot be configured", name)
		}
	}
	if _, err := json.Marshal(u.Claims); err != nil {
		v.failUser(ua, "claims", "cannot be represented as JSON: %v", err)
	}
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

// checkHTTP checks http: each token alias an absolute path of its own,
// none an endpoint's path already (nor under the approval pages' /approve/).
func (v *validator) checkHTTP(h *HTTP) {
	taken := []string{"/token", "/bc-authorize", "/jwks", "/.well-known/openid-configuration", "/ciba/callback", "/ciba/upstream-ping",
		"/healthz", "/readyz", "/metrics", "/device_authorization", "/device", "/introspect", "/revoke", "/userinfo",
		"/manifest.webmanifest", "/sw.js", "/app", "/webpush/subscribe"}
	for i, a := range h.TokenAliases {
		p := fmt.Sprintf("http.token_aliases[%d]", i)
		u, err := url.Parse(a)
		switch {
		case err != nil || !strings.HasPrefix(a, "/") || strings.HasPrefix(a, "//") || u.RawQuery != "" || u.Fragment != "" || u.Path != a || strings.ContainsAny(a, "{} \t") || strings.HasSuffix(a, "/"):
			v.fail(p, "must be an absolute path such as /oauth/token (no query, braces, spaces or trailing slash), got %q", a)
		case slices.Contains(taken, a) || strings.HasPrefix(a, "/approve/") || strings.HasPrefix(a, "/app-icon-") || slices.Contains(h.TokenAliases[:i], a):
			v.fail(p, "%q is already an endpoint's path or listed before", a)
		}
	}
}

// checkLoginHintIssuers checks ciba.login_hint_issuers: absolute https
// (or http) URLs.
func (v *validator) checkLoginHintIssuers(c *CIBA) {
	for i, iss := range c.LoginHintIssuers {
		u, err := url.Parse(iss)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			v.fail(fmt.Sprintf("ciba.login_hint_issuers[%d]", i), "must be an issuer URL such as https://tenant.example.com/, got %q", iss)
		}
	}
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
		if msg := clientmeta.CheckHTTPURL(w.URL); msg != "" {
			v.fail("channels.webhook.url", "%s", msg)
		}
	}
	if w.Timeout <= 0 {
		v.fail("channels.webhook.timeout", "must be positive, got %s", w.Timeout)
	}
}

func (v *validator) checkClients(c *Config) {
	if len(c.Clients) == 0 {
		v.fail("clients", "at least one client is required")
		return
	}
	ids := make(map[string]int)
	for i := range c.Clients {
		cl := &c.Clients[i]
		p := joinIndex("clients", i)
		if cl.ID != "" {
			if first, dup := ids[cl.ID]; dup {
				v.fail(joinKey(p, "client_id"), "duplicate client_id %q (also clients[%d])", cl.ID, first)
			} else {
				ids[cl.ID] = i
			}
		}
		v.checkClient(c, cl, p)
	}
}

// checkClient applies the client rules of internal/clientmeta, reporting
// each problem at its path under p, and keeps the valid client in
// cl.Checked.
func (v *validator) checkClient(c *Config, cl *Client, p string) {
	checked, problems := clientmeta.Check(c.ClientMetadata(cl))
	for _, pr := range problems {
		v.fail(joinKey(p, pr.Field), "%s", pr.Message)
	}
	cl.Checked = checked
}
