package config

import (
	"strings"
	"testing"
)

// TestRules has one row per validation rule. Each row breaks exactly that
// rule in an otherwise valid configuration and checks that a problem names
// the offending path, with a line number, and says what is wrong.
func TestRules(t *testing.T) {
	poll := "client_id: c1\nclient_secret: s1\nbackchannel_token_delivery_mode: poll\n"
	jwks := "jwks: '{\"keys\":[" + demoPublicJWK + "]}'\n"
	alice := "username: alice\npassword_hash: \"" + hashAlicePassword + "\"\n"
	// fapiClient is a client FAPI-CIBA accepts once it has
	// backchannel_authentication_request_signing_alg: ES256.
	fapiClient := func(methods string) string {
		return "client_id: f1\ntoken_endpoint_auth_methods: [" + methods + "]\n" + jwks + "backchannel_token_delivery_mode: poll\n"
	}
	fapiNoAlg := fapiClient("private_key_jwt")
	es256 := "backchannel_authentication_request_signing_alg: ES256\n"
	mtlsProxy := "mtls_proxy:\n  header: X-Client-Cert\n  trusted_proxies: [10.0.0.0/8]"
	bob := "username: bob\npassword_hash: \"" + hashBobPassword + "\"\n"
	rs256Key, es384Key := fapiSigningKeyFiles(t)

	tests := []struct {
		name string
		over map[string]string
		path string
		msg  string
	}{
		// Decoding.
		{"unknown keys are errors", map[string]string{"listen": "listne: 127.0.0.1:8080"},
			"listne", `unknown key "listne"; did you mean "listen"?`},
		{"unknown keys are errors in nested mappings too", map[string]string{"clients": clients(poll + "client_secert: x")},
			"clients[0].client_secert", `did you mean "client_secret"?`},
		{"a key appears once per mapping", map[string]string{"listen": "listen: :1\nlisten: :2"},
			"listen", "duplicate key"},
		{"durations are Go duration strings", map[string]string{"ciba": "ciba:\n  interval: 5 seconds"},
			"ciba.interval", `invalid duration "5 seconds"`},
		{"durations need a unit", map[string]string{"ciba": "ciba:\n  default_expiry: 300"},
			"ciba.default_expiry", `invalid duration "300"`},
		{"booleans are true or false", map[string]string{"clients": clients(poll + "backchannel_user_code_parameter: yes")},
			"clients[0].backchannel_user_code_parameter", "expected true or false"},
		{"integers are integers", map[string]string{"ciba": "ciba:\n  binding_message_max: many"},
			"ciba.binding_message_max", "expected an integer"},
		{"lists are lists", map[string]string{"clients": clients(poll + "scopes: openid profile")},
			"clients[0].scopes", "expected a list"},
		{"sections are mappings", map[string]string{"store": "store: memory"},
			"store", "expected a mapping"},
		{"a ${ reference is terminated", map[string]string{"issuer": "issuer: https://${HOST"},
			"issuer", "unterminated"},
		{"a ${ reference names a variable", map[string]string{"issuer": "issuer: https://${HOST NAME}"},
			"issuer", "invalid reference ${HOST NAME}"},

		// issuer
		{"issuer is required", map[string]string{"issuer": ""},
			"issuer", "required"},
		{"issuer is an absolute http(s) URL", map[string]string{"issuer": "issuer: ftp://ciba.example.com"},
			"issuer", "absolute http or https URL"},
		{"issuer has a host", map[string]string{"issuer": "issuer: /ciba"},
			"issuer", "absolute http or https URL"},
		{"issuer has no query", map[string]string{"issuer": "issuer: https://ciba.example.com/?tenant=1"},
			"issuer", "must not have a query"},
		{"issuer has no fragment", map[string]string{"issuer": "issuer: 'https://ciba.example.com/#x'"},
			"issuer", "must not have a fragment"},
		{"issuer has no trailing slash (endpoints would be //token; iss is compared byte for byte)", map[string]string{"issuer": "issuer: http://127.0.0.1:8080/"},
			"issuer", `must not end with "/", got "http://127.0.0.1:8080/": every endpoint URL is the issuer followed by its path (http://127.0.0.1:8080/token)`},
		{"issuer with a path has no trailing slash either", map[string]string{"issuer": "issuer: https://ciba.example.com/tenant/"},
			"issuer", `write "https://ciba.example.com/tenant"`},

		// listen
		{"listen is host:port", map[string]string{"listen": "listen: localhost"},
			"listen", "must be host:port"},
		{"listen port is a number", map[string]string{"listen": "listen: localhost:http"},
			"listen", "port must be a number"},

		// log
		{"log.level is debug|info|warn|error", map[string]string{"log": "log:\n  level: verbose"},
			"log.level", `must be one of debug, info, warn, error, got "verbose"`},
		{"log.format is text|json", map[string]string{"log": "log:\n  format: xml"},
			"log.format", `must be one of text, json, got "xml"`},

		// store
		{"store.type is embedded, redis or memory", map[string]string{"store": "store:\n  type: disk"},
			"store.type", `must be one of embedded, redis, memory, got "disk"`},
		{"store.redis.addrs is required", map[string]string{"store": "store:\n  type: redis"},
			"store.redis.addrs", "required"},
		{"store.redis.addrs are host:port", map[string]string{"store": "store:\n  type: redis\n  redis:\n    addrs: [redis.internal]"},
			"store.redis.addrs[0]", "must be host:port"},
		{"store.redis.addrs ports are numbers", map[string]string{"store": "store:\n  type: redis\n  redis:\n    addrs: ['redis:x']"},
			"store.redis.addrs[0]", "port must be a number"},
		{"store.path is empty for redis", map[string]string{"store": "store:\n  type: redis\n  path: x.db\n  redis:\n    addrs: ['127.0.0.1:6379']"},
			"store.path", "must be empty for the redis store"},
		{"store.redis.db is 0 for a cluster", map[string]string{"store": "store:\n  type: redis\n  redis:\n    addrs: ['a:1', 'b:2']\n    db: 2"},
			"store.redis.db", "must be 0 with several addresses"},
		{"store.redis.poll_cache_size is not negative", map[string]string{"store": "store:\n  type: redis\n  redis:\n    addrs: ['a:1']\n    poll_cache_size: -1"},
			"store.redis.poll_cache_size", "must not be negative"},
		{"store.redis.tls settings need tls.enabled", map[string]string{"store": "store:\n  type: redis\n  redis:\n    addrs: ['a:1']\n    tls:\n      server_name: r"},
			"store.redis.tls.enabled", "must be true"},
		{"store.redis.tls.ca_file is readable", map[string]string{"store": "store:\n  type: redis\n  redis:\n    addrs: ['a:1']\n    tls:\n      enabled: true\n      ca_file: nope.pem"},
			"store.redis.tls.ca_file", "cannot read"},
		{"upstream.type is local, oidc or ciba", map[string]string{"upstream": "upstream:\n  type: ldap"},
			"upstream.type", `must be "local", "oidc" or "ciba"`},
		{"upstream.oidc.issuer is required", map[string]string{"upstream": "upstream:\n  type: oidc"},
			"upstream.oidc.issuer", "required"},
		{"upstream.oidc.issuer is a URL", map[string]string{"upstream": "upstream:\n  type: oidc\n  oidc:\n    issuer: idp.example.com"},
			"upstream.oidc.issuer", "absolute http or https URL"},
		{"upstream.oidc.match_claims are identifying claims", map[string]string{"upstream": "upstream:\n  type: oidc\n  oidc:\n    issuer: https://idp.example.com\n    match_claims: [name]"},
			"upstream.oidc.match_claims[0]", `got "name"`},
		{"upstream.oidc.match_claims are listed once", map[string]string{"upstream": "upstream:\n  type: oidc\n  oidc:\n    issuer: https://idp.example.com\n    match_claims: [email, email]"},
			"upstream.oidc.match_claims[1]", "listed twice"},
		{"upstream.oidc.prompt is login or empty", map[string]string{"upstream": "upstream:\n  type: oidc\n  oidc:\n    issuer: https://idp.example.com\n    prompt: consent"},
			"upstream.oidc.prompt", `must be "login" or empty`},
		{"upstream.oidc.timeout is positive", map[string]string{"upstream": "upstream:\n  type: oidc\n  oidc:\n    issuer: https://idp.example.com\n    timeout: 0s"},
			"upstream.oidc.timeout", "must be positive"},
		{"push clients cannot use the oidc upstream", map[string]string{"upstream": "upstream:\n  type: oidc\n  oidc:\n    issuer: https://idp.example.com",
			"clients": clients("client_id: c1\nclient_secret: s1\nbackchannel_token_delivery_mode: push\nbackchannel_client_notification_endpoint: https://c.example.com/cb")},
			"clients[0].backchannel_token_delivery_mode", "push cannot be used with the oidc upstream"},
		{"oidc clients need credentials at the IdP", map[string]string{"upstream": "upstream:\n  type: oidc\n  oidc:\n    issuer: https://idp.example.com",
			"clients": clients("client_id: c1\nclient_secret_hash: \"" + hashBobPassword + "\"\nbackchannel_token_delivery_mode: poll")},
			"clients[0].upstream_credentials", "required with the oidc upstream"},
		{"upstream_credentials has a client_secret", map[string]string{"upstream": "upstream:\n  type: oidc\n  oidc:\n    issuer: https://idp.example.com",
			"clients": clients(poll + "upstream_credentials:\n  client_id: idp-c1")},
			"clients[0].upstream_credentials.client_secret", "required"},
		{"upstream_credentials.auth_method is a secret method", map[string]string{"upstream": "upstream:\n  type: oidc\n  oidc:\n    issuer: https://idp.example.com",
			"clients": clients(poll + "upstream_credentials:\n  client_id: idp-c1\n  client_secret: x\n  auth_method: private_key_jwt")},
			"clients[0].upstream_credentials.auth_method", `got "private_key_jwt"`},
		{"upstream.ciba.issuer is required", map[string]string{"upstream": "upstream:\n  type: ciba"},
			"upstream.ciba.issuer", "required"},
		{"upstream.ciba.timeout is positive", map[string]string{"upstream": "upstream:\n  type: ciba\n  ciba:\n    issuer: https://idp.example.com\n    timeout: -1s"},
			"upstream.ciba.timeout", "must be positive"},
		{"the ciba upstream reaches the user itself", map[string]string{"upstream": "upstream:\n  type: ciba\n  ciba:\n    issuer: https://idp.example.com",
			"channels": "channels:\n  webhook:\n    url: https://hooks.example.com"},
			"channels.webhook.url", "not used with the ciba upstream"},
		{"push clients cannot use the ciba upstream", map[string]string{"upstream": "upstream:\n  type: ciba\n  ciba:\n    issuer: https://idp.example.com",
			"clients": clients("client_id: c1\nclient_secret: s1\nbackchannel_token_delivery_mode: push\nbackchannel_client_notification_endpoint: https://c.example.com/cb")},
			"clients[0].backchannel_token_delivery_mode", "push cannot be used with the ciba upstream"},
		{"upstream_credentials.ping is for the ciba upstream", map[string]string{"upstream": "upstream:\n  type: oidc\n  oidc:\n    issuer: https://idp.example.com",
			"clients": clients(poll + "upstream_credentials:\n  ping: true")},
			"clients[0].upstream_credentials.ping", "only for the ciba upstream"},
		{"upstream.type is local", map[string]string{"upstream": "upstream:\n  type: ldap"},
			"upstream.type", `must be "local"`},
		{"the local upstream has at least one user", map[string]string{"upstream": "upstream:\n  type: local"},
			"upstream.local.users", "at least one user is required"},
		{"username is required", map[string]string{"upstream": localUsers(alice, "password_hash: \""+hashBobPassword+"\"")},
			"upstream.local.users[1].username", "required"},
		{"username is unique", map[string]string{"upstream": localUsers(alice, alice)},
			"upstream.local.users[1].username", `duplicate username "alice" (also upstream.local.users[0])`},
		{"subject is unique", map[string]string{"upstream": localUsers(alice, bob+"subject: alice")},
			"upstream.local.users[1].subject", `duplicate subject "alice"`},
		{"subject is at most 255 ASCII characters", map[string]string{"upstream": localUsers(alice + "subject: " + strings.Repeat("x", 256))},
			"upstream.local.users[0].subject", "at most 255 characters"},
		{"subject is ASCII", map[string]string{"upstream": localUsers(alice + "subject: élise")},
			"upstream.local.users[0].subject", "printable ASCII"},
		{"password_hash is required", map[string]string{"upstream": localUsers("username: alice")},
			"upstream.local.users[0].password_hash", "required"},
		{"password_hash is bcrypt", map[string]string{"upstream": localUsers("username: alice\npassword_hash: alice-password")},
			"upstream.local.users[0].password_hash", "not a bcrypt hash"},
		{"user_code_hash is bcrypt", map[string]string{"upstream": localUsers(alice + "user_code_hash: '1234'")},
			"upstream.local.users[0].user_code_hash", "not a bcrypt hash"},
		{"claims cannot set a claim cibaproxy sets", map[string]string{"upstream": localUsers(alice + "claims: {sub: root}")},
			"upstream.local.users[0].claims.sub", `claim "sub" is set by cibaproxy`},
		{"claims are a mapping", map[string]string{"upstream": localUsers(alice + "claims: [email]")},
			"upstream.local.users[0].claims", "expected a mapping"},
		{"users_file is readable", map[string]string{"upstream": "upstream:\n  local:\n    users_file: does-not-exist.yaml"},
			"upstream.local.users_file", "cannot read the users file"},

		// ciba
		{"ciba.default_expiry is positive", map[string]string{"ciba": "ciba:\n  default_expiry: 0s"},
			"ciba.default_expiry", "must be positive"},
		{"ciba.max_expiry is at least default_expiry", map[string]string{"ciba": "ciba:\n  default_expiry: 10m\n  max_expiry: 5m"},
			"ciba.max_expiry", "must be at least default_expiry (10m0s)"},
		{"ciba.interval is at least 1s", map[string]string{"ciba": "ciba:\n  interval: 500ms"},
			"ciba.interval", "must be at least 1s"},
		{"ciba.interval is shorter than default_expiry", map[string]string{"ciba": "ciba:\n  default_expiry: 10s\n  interval: 10s"},
			"ciba.interval", "must be shorter than default_expiry"},
		{"ciba.long_poll is at most 60s", map[string]string{"ciba": "ciba:\n  long_poll: 61s"},
			"ciba.long_poll", "between 0 (off) and 1m0s"},
		{"ciba.long_poll is not negative", map[string]string{"ciba": "ciba:\n  long_poll: -1s"},
			"ciba.long_poll", "between 0 (off) and 1m0s"},
		{"ciba.expired_grace is not negative", map[string]string{"ciba": "ciba:\n  expired_grace: -1m"},
			"ciba.expired_grace", "must not be negative"},
		{"ciba.binding_message_max is at least 1", map[string]string{"ciba": "ciba:\n  binding_message_max: 0"},
			"ciba.binding_message_max", "between 1 and 256"},
		{"ciba.binding_message_max is at most 256", map[string]string{"ciba": "ciba:\n  binding_message_max: 257"},
			"ciba.binding_message_max", "between 1 and 256"},

		// tokens
		{"tokens.access_token_ttl is positive", map[string]string{"tokens": "tokens:\n  access_token_ttl: 0s"},
			"tokens.access_token_ttl", "must be positive"},
		{"tokens.id_token_ttl is positive", map[string]string{"tokens": "tokens:\n  id_token_ttl: -1m"},
			"tokens.id_token_ttl", "must be positive"},
		{"tokens.refresh_token_ttl is not negative", map[string]string{"tokens": "tokens:\n  refresh_token_ttl: -1h"},
			"tokens.refresh_token_ttl", "must not be negative"},
		{"tokens.signing_key_file is readable", map[string]string{"tokens": "tokens:\n  signing_key_file: does-not-exist.pem"},
			"tokens.signing_key_file", "cannot read the signing key"},
		{"encryption key id is required", map[string]string{"tokens": "tokens:\n  encryption_keys:\n    - key: " + key32},
			"tokens.encryption_keys[0].id", "required"},
		{"encryption key ids are unique", map[string]string{"tokens": "tokens:\n  encryption_keys:\n    - {id: k1, key: " + key32 + "}\n    - {id: k1, key: " + key32 + "}"},
			"tokens.encryption_keys[1].id", `duplicate id "k1"`},
		{"encryption key id is at most 255 bytes", map[string]string{"tokens": "tokens:\n  encryption_keys:\n    - {id: " + strings.Repeat("k", 256) + ", key: " + key32 + "}"},
			"tokens.encryption_keys[0].id", "at most 255 bytes"},
		{"encryption key is required", map[string]string{"tokens": "tokens:\n  encryption_keys:\n    - id: k1"},
			"tokens.encryption_keys[0].key", "required"},
		{"encryption key is base64", map[string]string{"tokens": "tokens:\n  encryption_keys:\n    - {id: k1, key: 'not base64!'}"},
			"tokens.encryption_keys[0].key", "not valid base64"},
		{"encryption key is exactly 32 bytes", map[string]string{"tokens": "tokens:\n  encryption_keys:\n    - {id: k1, key: AAAAAAAAAAAAAAAAAAAAAA==}"},
			"tokens.encryption_keys[0].key", "exactly 32 bytes (AES-256), got 16"},

		// channels
		{"channels.webhook.url is an absolute http(s) URL", map[string]string{"channels": "channels:\n  webhook:\n    url: hooks.example.com/ciba"},
			"channels.webhook.url", "absolute http or https URL"},
		{"channels.webhook.timeout is positive", map[string]string{"channels": "channels:\n  webhook:\n    url: https://hooks.example.com\n    timeout: 0s"},
			"channels.webhook.timeout", "must be positive"},
		{"channels.order lists every configured channel", map[string]string{"channels": "channels:\n  order: [webhook]\n  webhook:\n    url: https://hooks.example.com\n  email:\n    host: smtp.example.com\n    from: a@example.com"},
			"channels.order", "email is configured"},
		{"channels.order names configured channels", map[string]string{"channels": "channels:\n  order: [webhook, webpush]\n  webhook:\n    url: https://hooks.example.com"},
			"channels.order[1]", "webpush is not configured"},
		{"channels.order names known channels", map[string]string{"channels": "channels:\n  order: [sms]"},
			"channels.order[0]", `got "sms"`},
		{"channels.webpush.subject is required", map[string]string{"channels": "channels:\n  webpush:\n    enabled: true"},
			"channels.webpush.subject", "required"},
		{"channels.email.from is required", map[string]string{"channels": "channels:\n  email:\n    host: smtp.example.com"},
			"channels.email.from", "required"},
		{"channels.email.from is an address", map[string]string{"channels": "channels:\n  email:\n    host: smtp.example.com\n    from: nobody"},
			"channels.email.from", "not an e-mail address"},
		{"channels.email.tls is starttls|tls|none", map[string]string{"channels": "channels:\n  email:\n    host: smtp.example.com\n    from: a@example.com\n    tls: ssl"},
			"channels.email.tls", `got "ssl"`},
		{"channels.email.port is a port", map[string]string{"channels": "channels:\n  email:\n    host: smtp.example.com\n    from: a@example.com\n    port: 70000"},
			"channels.email.port", "must be a port"},
		{"channels.email username and password go together", map[string]string{"channels": "channels:\n  email:\n    host: smtp.example.com\n    from: a@example.com\n    username: u"},
			"channels.email.password", "go together"},
		{"channels.email.subject is a template", map[string]string{"channels": "channels:\n  email:\n    host: smtp.example.com\n    from: a@example.com\n    subject: '{{.ClientName'"},
			"channels.email.subject", "not a valid template"},
		{"channels.email.template_file is readable", map[string]string{"channels": "channels:\n  email:\n    host: smtp.example.com\n    from: a@example.com\n    template_file: nope.tmpl"},
			"channels.email.template_file", "cannot read"},

		// clients
		{"there is at least one client", map[string]string{"clients": ""},
			"clients", "at least one client is required"},
		{"client_id is required", map[string]string{"clients": clients("client_secret: s1\nbackchannel_token_delivery_mode: poll")},
			"clients[0].client_id", "required"},
		{"client_id is unique", map[string]string{"clients": clients(poll, poll)},
			"clients[1].client_id", `duplicate client_id "c1" (also clients[0])`},
		{"client_id is printable ASCII", map[string]string{"clients": clients("client_id: \"c\\t1\"\nclient_secret: s1\nbackchannel_token_delivery_mode: poll")},
			"clients[0].client_id", "printable ASCII"},
		{"token_endpoint_auth_methods is a subset of the supported methods", map[string]string{"clients": clients(poll + "token_endpoint_auth_methods: [client_secret_basic, client_secret_jwt]")},
			"clients[0].token_endpoint_auth_methods[1]", `got "client_secret_jwt"`},
		{"token_endpoint_auth_methods lists a method once", map[string]string{"clients": clients(poll + "token_endpoint_auth_methods: [client_secret_post, client_secret_post]")},
			"clients[0].token_endpoint_auth_methods[1]", "listed twice"},
		{"a client_secret_* method needs client_secret or client_secret_hash", map[string]string{"clients": clients("client_id: c1\nbackchannel_token_delivery_mode: poll")},
			"clients[0].client_secret", "required by client_secret_basic"},
		{"client_secret and client_secret_hash are not both set", map[string]string{"clients": clients(poll + "client_secret_hash: \"" + hashBobPassword + "\"")},
			"clients[0].client_secret_hash", "not both"},
		{"client_secret is not allowed with only private_key_jwt", map[string]string{"clients": clients(poll + jwks + "token_endpoint_auth_methods: [private_key_jwt]")},
			"clients[0].client_secret", "not allowed"},
		{"client_secret_hash is not allowed with only private_key_jwt", map[string]string{"clients": clients("client_id: c1\nclient_secret_hash: \"" + hashBobPassword + "\"\nbackchannel_token_delivery_mode: poll\n" + jwks + "token_endpoint_auth_methods: [private_key_jwt]")},
			"clients[0].client_secret_hash", "not allowed"},
		{"client_secret_hash is bcrypt", map[string]string{"clients": clients("client_id: c1\nclient_secret_hash: s1\nbackchannel_token_delivery_mode: poll")},
			"clients[0].client_secret_hash", "not a bcrypt hash"},
		{"backchannel_token_delivery_mode is required", map[string]string{"clients": clients("client_id: c1\nclient_secret: s1")},
			"clients[0].backchannel_token_delivery_mode", "required"},
		{"backchannel_token_delivery_mode is poll|ping|push", map[string]string{"clients": clients("client_id: c1\nclient_secret: s1\nbackchannel_token_delivery_mode: pull")},
			"clients[0].backchannel_token_delivery_mode", `must be one of poll, ping, push, got "pull"`},
		{"backchannel_client_notification_endpoint is required for ping", map[string]string{"clients": clients("client_id: c1\nclient_secret: s1\nbackchannel_token_delivery_mode: ping")},
			"clients[0].backchannel_client_notification_endpoint", "required in ping mode"},
		{"backchannel_client_notification_endpoint is required for push", map[string]string{"clients": clients("client_id: c1\nclient_secret: s1\nbackchannel_token_delivery_mode: push")},
			"clients[0].backchannel_client_notification_endpoint", "required in push mode"},
		{"backchannel_client_notification_endpoint is an absolute http(s) URL", map[string]string{"clients": clients("client_id: c1\nclient_secret: s1\nbackchannel_token_delivery_mode: ping\nbackchannel_client_notification_endpoint: /notify")},
			"clients[0].backchannel_client_notification_endpoint", "absolute http or https URL"},
		{"backchannel_client_notification_endpoint is empty for poll", map[string]string{"clients": clients(poll + "backchannel_client_notification_endpoint: https://c.example.com/cb")},
			"clients[0].backchannel_client_notification_endpoint", "must be empty in poll mode"},
		{"backchannel_authentication_request_signing_alg is RS256|PS256|ES256|HS256", map[string]string{"clients": clients(poll + jwks + "backchannel_authentication_request_signing_alg: none")},
			"clients[0].backchannel_authentication_request_signing_alg", `got "none"`},
		{"an asymmetric signing alg needs jwks or jwks_uri", map[string]string{"clients": clients(poll + "backchannel_authentication_request_signing_alg: ES256")},
			"clients[0].backchannel_authentication_request_signing_alg", "set jwks or jwks_uri"},
		{"the signing alg has a matching key in jwks", map[string]string{"clients": clients(poll + jwks + "backchannel_authentication_request_signing_alg: RS256")},
			"clients[0].backchannel_authentication_request_signing_alg", "no signing key usable with RS256"},
		{"HS256 only with allow_hs256_request_object", map[string]string{"clients": clients(poll + "backchannel_authentication_request_signing_alg: HS256")},
			"clients[0].backchannel_authentication_request_signing_alg", "HS256 needs allow_hs256_request_object"},
		{"allow_hs256_request_object needs a plain client_secret", map[string]string{"clients": clients("client_id: c1\nclient_secret_hash: \"" + hashBobPassword + "\"\nbackchannel_token_delivery_mode: poll\nallow_hs256_request_object: true")},
			"clients[0].allow_hs256_request_object", "needs a plain client_secret"},
		{"allow_hs256_request_object does not contradict an asymmetric signing alg", map[string]string{"clients": clients(poll + jwks + "backchannel_authentication_request_signing_alg: ES256\nallow_hs256_request_object: true")},
			"clients[0].allow_hs256_request_object", "contradicts backchannel_authentication_request_signing_alg ES256"},
		{"jwks and jwks_uri are not both set", map[string]string{"clients": clients(poll + jwks + "jwks_uri: https://c.example.com/jwks")},
			"clients[0].jwks_uri", "not both"},
		{"jwks parses as a JWK Set", map[string]string{"clients": clients(poll + "jwks: '[1, 2]'")},
			"clients[0].jwks", "not a JWK Set"},
		{"jwks holds at least one key", map[string]string{"clients": clients(poll + "jwks: {keys: []}")},
			"clients[0].jwks", "holds no keys"},
		{"jwks keys are valid JWKs", map[string]string{"clients": clients(poll + "jwks: {keys: [{kty: EC, crv: P-256}]}")},
			"clients[0].jwks.keys[0]", "not a valid JWK"},
		{"jwks holds no private keys", map[string]string{"clients": clients(poll + "jwks: '{\"keys\":[" + demoPrivateJWK + "]}'")},
			"clients[0].jwks.keys[0]", "private or symmetric key"},
		{"jwks kids are unique", map[string]string{"clients": clients(poll + "jwks: '{\"keys\":[" + demoPublicJWK + "," + demoPublicJWK + "]}'")},
			"clients[0].jwks.keys[1]", `duplicate kid "demo-poll-1"`},
		{"jwks_uri is an absolute http(s) URL", map[string]string{"clients": clients(poll + "jwks_uri: jwks.json")},
			"clients[0].jwks_uri", "absolute http or https URL"},
		{"private_key_jwt needs jwks or jwks_uri", map[string]string{"clients": clients(poll + "token_endpoint_auth_methods: [client_secret_basic, private_key_jwt]")},
			"clients[0].token_endpoint_auth_methods", "private_key_jwt needs the client's public keys"},
		{"the HS256 switch needs a secret of 32 bytes, an HS256 key (RFC 7518 §3.2)", map[string]string{"clients": clients(poll + "allow_hs256_request_object: true")},
			"clients[0].allow_hs256_request_object", "needs a client_secret of at least 32 bytes"},
		{"scopes include openid", map[string]string{"clients": clients(poll + "scopes: [profile]")},
			"clients[0].scopes", "must include openid"},
		{"scopes are scope-tokens", map[string]string{"clients": clients(poll + "scopes: [openid, 'a b']")},
			"clients[0].scopes[1]", `invalid scope "a b"`},
		{"scopes are listed once", map[string]string{"clients": clients(poll + "scopes: [openid, openid]")},
			"clients[0].scopes[1]", "listed twice"},

		// outbound (server-side request forgery)
		{"a notification endpoint is https without the development switch (CIBA Core §4)", map[string]string{"clients": clients("client_id: c1\nclient_secret: s1\nbackchannel_token_delivery_mode: ping\nbackchannel_client_notification_endpoint: http://c.example.com/cb")},
			"clients[0].backchannel_client_notification_endpoint", `client "c1": must be an https URL (CIBA Core §4); plain http is allowed only with the development switch outbound.allow_http: true`},
		{"a jwks_uri over http is on a loopback address only, even with the development switch", map[string]string{"clients": clients(poll + "jwks_uri: http://c.example.com/jwks"), "outbound": "outbound:\n  allow_http: true"},
			"clients[0].jwks_uri", `client "c1": must be an https URL; plain http is allowed, with outbound.allow_http, on a loopback address only`},
		{"a jwks_uri is https without the development switch", map[string]string{"clients": clients(poll + "jwks_uri: http://c.example.com/jwks")},
			"clients[0].jwks_uri", `client "c1": must be an https URL`},
		{"a notification endpoint on a private address is refused", map[string]string{"clients": clients("client_id: c1\nclient_secret: s1\nbackchannel_token_delivery_mode: push\nbackchannel_client_notification_endpoint: https://10.1.2.3/cb")},
			"clients[0].backchannel_client_notification_endpoint", `client "c1": 10.1.2.3 is a special-use address (private, RFC 1918)`},
		{"the metadata address is refused in IPv4-mapped form too", map[string]string{"clients": clients("client_id: c1\nclient_secret: s1\nbackchannel_token_delivery_mode: ping\nbackchannel_client_notification_endpoint: 'https://[::ffff:169.254.169.254]/cb'")},
			"clients[0].backchannel_client_notification_endpoint", "link-local (cloud metadata)"},
		{"a jwks_uri on an IPv6 unique local address is refused", map[string]string{"clients": clients(poll + "jwks_uri: 'https://[fd00::1]/jwks'")},
			"clients[0].jwks_uri", "unique local"},
		{"outbound.allow_networks are CIDR networks", map[string]string{"outbound": "outbound:\n  allow_networks: [10.0.0.0/33]"},
			"outbound.allow_networks[0]", "must be a CIDR network"},
		{"outbound.allow_networks have no host bits", map[string]string{"outbound": "outbound:\n  allow_networks: [10.1.2.3/8]"},
			"outbound.allow_networks[0]", "did you mean 10.0.0.0/8?"},

		// limits
		{"a limit's requests are not negative", map[string]string{"limits": "limits:\n  bc_authorize_per_client:\n    requests: -1"},
			"limits.bc_authorize_per_client.requests", "must not be negative"},
		{"a limit's period is positive", map[string]string{"limits": "limits:\n  requests_per_user:\n    requests: 5\n    per: 0s"},
			"limits.requests_per_user.per", "must be positive"},
		{"limits.max_keys is at least 1", map[string]string{"limits": "limits:\n  max_keys: 0"},
			"limits.max_keys", "at least 1"},
		{"limits.client_ip_header needs trusted_proxies", map[string]string{"limits": "limits:\n  client_ip_header: X-Real-IP"},
			"limits.client_ip_header", "needs limits.trusted_proxies"},
		{"limits.client_ip_header is a header name", map[string]string{"limits": "limits:\n  trusted_proxies: [10.0.0.0/8]\n  client_ip_header: 'X Real IP'"},
			"limits.client_ip_header", "must be an HTTP header name"},
		{"limits.trusted_proxies are CIDR networks", map[string]string{"limits": "limits:\n  trusted_proxies: [proxy.internal]"},
			"limits.trusted_proxies[0]", "must be a CIDR network"},
		{"one address's share of a password lockout is below the user's", map[string]string{"limits": "limits:\n  password_failures_per_user_ip:\n    requests: 10\n    per: 1h"},
			"limits.password_failures_per_user_ip", "must allow fewer tries per period than limits.password_failures_per_user"},
		{"one client's share of a user_code lockout is below the user's", map[string]string{"limits": "limits:\n  user_code_failures_per_user:\n    requests: 5"},
			"limits.user_code_failures_per_client_user", "must allow fewer tries per period than limits.user_code_failures_per_user"},
		{"a client's allowed_networks are CIDR networks", map[string]string{"clients": clients(poll + "allowed_networks: [office]")},
			"clients[0].allowed_networks[0]", `got "office"`},

		// tracing (written in place of the limits section, which may be absent)
		{"tracing.sample_ratio is a number", map[string]string{"limits": "tracing:\n  sample_ratio: half"},
			"tracing.sample_ratio", `expected a number such as 0.25, got "half"`},
		{"tracing.sample_ratio is at most 1", map[string]string{"limits": "tracing:\n  sample_ratio: 1.5"},
			"tracing.sample_ratio", "must be a number from 0 to 1"},
		{"tracing.sample_ratio is not negative", map[string]string{"limits": "tracing:\n  sample_ratio: -0.1"},
			"tracing.sample_ratio", "must be a number from 0 to 1"},
		{"tracing.otlp_endpoint is an absolute http(s) URL", map[string]string{"limits": "tracing:\n  otlp_endpoint: collector:4318"},
			"tracing.otlp_endpoint", "absolute http or https URL"},
		{"tracing.otlp_endpoint over http only to loopback", map[string]string{"limits": "tracing:\n  otlp_endpoint: http://collector.internal:4318"},
			"tracing.otlp_endpoint", "plain http is allowed only to a loopback address"},
		{"tracing.otlp_endpoint holds no credentials", map[string]string{"limits": "tracing:\n  otlp_endpoint: https://user:pw@collector.internal/v1/traces"},
			"tracing.otlp_endpoint", "must not hold user info"},
		{"tracing.otlp_endpoint has no query", map[string]string{"limits": "tracing:\n  otlp_endpoint: https://collector.internal/v1/traces?key=x"},
			"tracing.otlp_endpoint", "must not have a query"},

		// FAPI-CIBA profile (docs/fapi.md)
		{"profile is empty or fapi-ciba", map[string]string{"clients": clients(poll + "profile: fapi")},
			"clients[0].profile", `must be empty or fapi-ciba, got "fapi"`},
		{"FAPI-CIBA: signed authentication requests are required", map[string]string{"clients": clients(fapiNoAlg + "profile: fapi-ciba")},
			"clients[0].backchannel_authentication_request_signing_alg", "required by the FAPI-CIBA profile"},
		{"FAPI-CIBA: request objects are PS256 or ES256, not RS256", map[string]string{"clients": clients(strings.Replace(fapiNoAlg, jwks, "jwks_uri: https://client.example/jwks\n", 1) + "profile: fapi-ciba\nbackchannel_authentication_request_signing_alg: RS256")},
			"clients[0].backchannel_authentication_request_signing_alg", `must be PS256 or ES256 under the FAPI-CIBA profile (FAPI 1.0 Advanced §8.6), got "RS256"`},
		{"FAPI-CIBA: no HS256 switch", map[string]string{"clients": clients(fapiNoAlg + "profile: fapi-ciba\nbackchannel_authentication_request_signing_alg: HS256\nallow_hs256_request_object: true\nclient_secret: " + key32)},
			"clients[0].backchannel_authentication_request_signing_alg", `must be PS256 or ES256 under the FAPI-CIBA profile (FAPI 1.0 Advanced §8.6), got "HS256"`},
		{"FAPI-CIBA: no client secret methods", map[string]string{"clients": clients(fapiClient("private_key_jwt, client_secret_basic") + es256 + "profile: fapi-ciba\nclient_secret: s1")},
			"clients[0].token_endpoint_auth_methods[1]", `"client_secret_basic" is not allowed under the FAPI-CIBA profile`},
		{"FAPI-CIBA: shall not support push mode", map[string]string{"clients": clients(strings.Replace(fapiNoAlg, "mode: poll", "mode: push\nbackchannel_client_notification_endpoint: https://client.example/cb", 1) + es256 + "profile: fapi-ciba")},
			"clients[0].backchannel_token_delivery_mode", "push is not allowed under the FAPI-CIBA profile"},
		{"FAPI-CIBA: no device grant, whose requests cannot be signed", map[string]string{"clients": clients(fapiNoAlg + es256 + "profile: fapi-ciba\ndevice_authorization: true")},
			"clients[0].device_authorization", `not allowed for client "f1": under the FAPI-CIBA profile its authentication requests must be signed (FAPI-CIBA §5.2.2-6), but a device authorization request (RFC 8628 §3.1) cannot be signed`},
		{"FAPI-CIBA: fapi.ciba applies the profile to every client", map[string]string{"clients": clients(fapiNoAlg), "limits": "fapi:\n  ciba: true"},
			"clients[0].backchannel_authentication_request_signing_alg", "required by the FAPI-CIBA profile"},
		{"FAPI: the authorization server shall use PS256 or ES256 (FAPI 1.0 Advanced §8.6): an RS256 signing key is refused", map[string]string{"clients": clients(fapiNoAlg + es256), "limits": "fapi:\n  ciba: true", "tokens": "tokens:\n  signing_key_file: " + rs256Key},
			"tokens.signing_key_file", "this key signs RS256, but under fapi.ciba ID and access tokens must be signed with PS256 or ES256"},
		{"FAPI: the authorization server shall use PS256 or ES256 (FAPI 1.0 Advanced §8.6): an ES384 signing key is refused", map[string]string{"clients": clients(fapiNoAlg + es256), "limits": "fapi:\n  ciba: true", "tokens": "tokens:\n  signing_key_file: " + es384Key},
			"tokens.signing_key_file", "this key signs ES384"},

		// Mutual TLS (RFC 8705)
		{"tls: cert_file and key_file together", map[string]string{"limits": "tls:\n  cert_file: server.pem"},
			"tls.key_file", "set together"},
		{"mtls_proxy: header needs trusted_proxies", map[string]string{"limits": "mtls_proxy:\n  header: X-Client-Cert"},
			"mtls_proxy.trusted_proxies", "required with mtls_proxy.header"},
		{"mtls_proxy: trusted_proxies are CIDRs", map[string]string{"limits": "mtls_proxy:\n  header: X-Client-Cert\n  trusted_proxies: [nope]"},
			"mtls_proxy.trusted_proxies[0]", "must be a CIDR network"},
		{"tls_client_auth MUST use exactly one of the subject metadata (RFC 8705 §2.1.2): none", map[string]string{"clients": clients("client_id: m1\ntoken_endpoint_auth_methods: [tls_client_auth]\nbackchannel_token_delivery_mode: poll"), "limits": mtlsProxy},
			"clients[0].token_endpoint_auth_methods", "tls_client_auth needs one of tls_client_auth_subject_dn"},
		{"tls_client_auth MUST use exactly one of the subject metadata (RFC 8705 §2.1.2): two", map[string]string{"clients": clients("client_id: m1\ntoken_endpoint_auth_methods: [tls_client_auth]\ntls_client_auth_subject_dn: CN=m1\ntls_client_auth_san_dns: m1.example\nbackchannel_token_delivery_mode: poll"), "limits": mtlsProxy},
			"clients[0].tls_client_auth_subject_dn", "set exactly one of the tls_client_auth_* names"},
		{"tls_client_auth needs the client CAs", map[string]string{"clients": clients("client_id: m1\ntoken_endpoint_auth_methods: [tls_client_auth]\ntls_client_auth_subject_dn: CN=m1\nbackchannel_token_delivery_mode: poll"), "limits": mtlsProxy},
			"clients[0].token_endpoint_auth_methods", "tls_client_auth needs tls.client_ca_file"},
		{"self_signed_tls_client_auth needs a way for certificates to arrive", map[string]string{"clients": clients("client_id: m1\ntoken_endpoint_auth_methods: [self_signed_tls_client_auth]\n" + jwks + "backchannel_token_delivery_mode: poll")},
			"clients[0].token_endpoint_auth_methods", "self_signed_tls_client_auth needs tls.cert_file or mtls_proxy"},
		{"tls_client_auth_* only with tls_client_auth", map[string]string{"clients": clients(poll + "tls_client_auth_san_uri: https://m1.example")},
			"clients[0].tls_client_auth_san_uri", "only used by tls_client_auth"},
		{"self_signed_tls_client_auth needs the certificate in jwks or at jwks_uri (RFC 8705 §2.2)", map[string]string{"clients": clients("client_id: m1\ntoken_endpoint_auth_methods: [self_signed_tls_client_auth]\nbackchannel_token_delivery_mode: poll"), "limits": mtlsProxy},
			"clients[0].token_endpoint_auth_methods", "self_signed_tls_client_auth needs the client's certificate in jwks or at jwks_uri"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			data := doc(tt.over)
			ps := problemsOf(t, data, noEnv)
			for _, p := range ps {
				if p.Path == tt.path && strings.Contains(p.Message, tt.msg) {
					if p.File != "test.yaml" {
						t.Errorf("problem file = %q, want test.yaml", p.File)
					}
					if p.Line <= 0 {
						t.Errorf("problem %q has no line", p)
					}
					// One broken rule, one message: no cascade of
					// follow-up complaints about the same mistake.
					if len(ps) != 1 {
						t.Errorf("got %d problems, want 1:\n%v", len(ps), ps)
					}
					return
				}
			}
			t.Errorf("no problem at %s containing %q; got:\n%v\n--- config:\n%s", tt.path, tt.msg, ps, data)
		})
	}
}

// key32 is the base64 of 32 zero bytes.
const key32 = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="

// TestValidBaseConfig checks that the configuration the rule rows start from
// is valid, so each row's problem comes from what the row changed.
func TestValidBaseConfig(t *testing.T) {
	mustParse(t, doc(nil), noEnv)
}

// TestRedisPollCacheSize: the default when absent, 0 (off) when set so.
func TestRedisPollCacheSize(t *testing.T) {
	for _, tt := range []struct {
		yaml string
		want int
	}{
		{"store:\n  type: redis\n  redis:\n    addrs: ['a:1']", DefaultPollCacheSize},
		{"store:\n  type: redis\n  redis:\n    addrs: ['a:1']\n    poll_cache_size: 0", 0},
		{"store:\n  type: redis\n  redis:\n    addrs: ['a:1']\n    poll_cache_size: 5000", 5000},
	} {
		c := mustParse(t, doc(map[string]string{"store": tt.yaml}), noEnv)
		if got := c.Store.Redis.PollCacheSize; got != tt.want {
			t.Errorf("%q: poll_cache_size = %d, want %d", tt.yaml, got, tt.want)
		}
	}
}
