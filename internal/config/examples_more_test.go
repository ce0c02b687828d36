package config

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"text/template"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/cibaproxy/cibaproxy/internal/authzdetails"
	"github.com/cibaproxy/cibaproxy/internal/channel/email"
)

const deployDir = "../../deploy"

// setEnv sets every variable of env for the duration of the test; a value
// of "" unsets it.
func setEnv(t *testing.T, env map[string]string) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v) // registers the restore
		if v == "" {
			os.Unsetenv(k)
		}
	}
}

func check(t *testing.T, name string, got, want any) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %v, want %v", name, got, want)
	}
}

// oidcEnv are the variables examples/oidc.yaml reads, all unset.
var oidcEnv = map[string]string{
	"CIBAPROXY_ISSUER": "", "CIBAPROXY_LISTEN": "", "CIBAPROXY_LOG_LEVEL": "", "CIBAPROXY_DATA": "",
	"OIDC_ISSUER": "", "CIBAPROXY_WEBHOOK_URL": "", "POS_TERMINAL_SECRET": "", "CALLCENTER_SECRET": "",
	"CALLCENTER_NOTIFY_URL": "", "CALLCENTER_IDP_SECRET": "",
}

func TestOIDCExample(t *testing.T) {
	setEnv(t, oidcEnv)
	setEnv(t, map[string]string{
		"CIBAPROXY_ISSUER":      "https://ciba.example.com",
		"OIDC_ISSUER":           "https://idp.example.com/realms/main",
		"CIBAPROXY_WEBHOOK_URL": "https://sms.example.com/ciba",
		"POS_TERMINAL_SECRET":   "pos-secret",
		"CALLCENTER_SECRET":     "cc-secret",
		"CALLCENTER_IDP_SECRET": "cc-idp-secret",
		"CALLCENTER_NOTIFY_URL": "https://callcenter.example.com/ciba",
	})
	c, err := Load(filepath.Join(examplesDir, "oidc.yaml"))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	o := c.Upstream.OIDC
	check(t, "issuer", c.Issuer, "https://ciba.example.com")
	check(t, "upstream.type", c.Upstream.Type, UpstreamOIDC)
	check(t, "upstream.oidc.issuer", o.Issuer, "https://idp.example.com/realms/main")
	check(t, "upstream.oidc.match_claims", strings.Join(o.MatchClaims, ","), "email,preferred_username")
	check(t, "upstream.oidc.prompt", o.Prompt, "login")
	check(t, "upstream.oidc.timeout", o.Timeout, 10*time.Second)
	check(t, "channels.webhook.url", c.Channels.Webhook.URL, "https://sms.example.com/ciba")
	check(t, "ciba.long_poll", c.CIBA.LongPoll, 20*time.Second)
	if len(c.Clients) != 2 {
		t.Fatalf("%d clients, want 2", len(c.Clients))
	}
	for _, cl := range c.Clients {
		if cl.DeliveryMode == DeliveryPush {
			t.Errorf("client %s uses push, which the oidc upstream cannot serve", cl.ID)
		}
	}

	pos := c.Clients[0]
	check(t, "pos-terminal id", pos.ID, "pos-terminal")
	check(t, "pos-terminal mode", pos.DeliveryMode, DeliveryPoll)
	check(t, "pos-terminal user code", pos.UserCodeParameter, true)
	// No upstream_credentials: its own id and secret are used at the IdP.
	check(t, "pos-terminal credentials", pos.Credentials(),
		UpstreamCredentials{ClientID: "pos-terminal", ClientSecret: "pos-secret", AuthMethod: AuthClientSecretBasic})

	cc := c.Clients[1]
	check(t, "callcenter id", cc.ID, "callcenter")
	check(t, "callcenter secret", cc.Secret, "cc-secret")
	check(t, "callcenter mode", cc.DeliveryMode, DeliveryPing)
	check(t, "callcenter notification endpoint", cc.NotificationEndpoint, "https://callcenter.example.com/ciba")
	check(t, "callcenter credentials", cc.Credentials(),
		UpstreamCredentials{ClientID: "cibaproxy-callcenter", ClientSecret: "cc-idp-secret", AuthMethod: AuthClientSecretBasic})
}

func TestOIDCExampleDefaults(t *testing.T) {
	setEnv(t, oidcEnv)
	c, err := Load(filepath.Join(examplesDir, "oidc.yaml"))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	// The Keycloak realm of docs/federation.md.
	check(t, "upstream.oidc.issuer", c.Upstream.OIDC.Issuer, "http://127.0.0.1:8081/realms/cibaproxy")
	check(t, "issuer", c.Issuer, "http://127.0.0.1:8080")
	check(t, "channels.webhook.url", c.Channels.Webhook.URL, "")
	// Unset secrets are visible placeholders, never empty.
	for _, s := range []string{c.Clients[0].Secret, c.Clients[1].Secret, c.Clients[1].Upstream.ClientSecret} {
		if !strings.HasPrefix(s, "change-me-") {
			t.Errorf("placeholder secret %q does not start with change-me-", s)
		}
	}
}

// redisEnv are the variables examples/redis.yaml reads, all unset.
var redisEnv = map[string]string{
	"CIBAPROXY_ISSUER": "", "CIBAPROXY_LISTEN": "", "CIBAPROXY_LOG_LEVEL": "", "CIBAPROXY_LOG_FORMAT": "",
	"REDIS_ADDR": "", "REDIS_USERNAME": "", "REDIS_PASSWORD": "", "REDIS_KEY_PREFIX": "", "REDIS_TIMEOUT": "",
	"REDIS_TLS": "", "REDIS_CA_FILE": "", "CIBAPROXY_WEBHOOK_URL": "", "CIBAPROXY_DEMO_NOTIFY_URL": "",
}

func TestRedisExampleDefaults(t *testing.T) {
	setEnv(t, redisEnv)
	c, err := Load(filepath.Join(examplesDir, "redis.yaml"))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	r := c.Store.Redis
	check(t, "store.type", c.Store.Type, StoreRedis)
	check(t, "store.path", c.Store.Path, "")
	check(t, "store.redis.addrs", strings.Join(r.Addrs, ","), "127.0.0.1:6379")
	check(t, "store.redis.username", r.Username, "")
	check(t, "store.redis.password", r.Password, "")
	check(t, "store.redis.key_prefix", r.KeyPrefix, "cibaproxy:")
	check(t, "store.redis.timeout", r.Timeout, 3*time.Second)
	check(t, "store.redis.poll_cache_size", r.PollCacheSize, DefaultPollCacheSize)
	check(t, "store.redis.tls.enabled", r.TLS.Enabled, false)
	check(t, "store.redis.master_name", r.MasterName, "")
	check(t, "store.redis.cluster", r.Cluster, false)
	check(t, "log.format", c.Log.Format, LogText)
	check(t, "ciba.long_poll", c.CIBA.LongPoll, 20*time.Second)
	check(t, "tokens.encryption_keys", len(c.Tokens.EncryptionKeys), 0)
	check(t, "users", len(c.Upstream.Local.Users), 2)
}

func TestRedisExampleEnvironment(t *testing.T) {
	setEnv(t, redisEnv)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, []byte("not parsed by Load"), 0o600); err != nil {
		t.Fatal(err)
	}
	setEnv(t, map[string]string{
		"CIBAPROXY_ISSUER":     "https://ciba.example.com",
		"CIBAPROXY_LISTEN":     ":8080",
		"CIBAPROXY_LOG_FORMAT": "json",
		"REDIS_ADDR":           "redis.internal:6380",
		"REDIS_USERNAME":       "cibaproxy",
		"REDIS_PASSWORD":       "p@ss:word#1",
		"REDIS_KEY_PREFIX":     "ciba-prod:",
		"REDIS_TIMEOUT":        "1500ms",
		"REDIS_TLS":            "true",
		"REDIS_CA_FILE":        ca,
	})
	c, err := Load(filepath.Join(examplesDir, "redis.yaml"))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	r := c.Store.Redis
	check(t, "listen", c.Listen, ":8080")
	check(t, "log.format", c.Log.Format, LogJSON)
	check(t, "store.redis.addrs", strings.Join(r.Addrs, ","), "redis.internal:6380")
	check(t, "store.redis.username", r.Username, "cibaproxy")
	check(t, "store.redis.password", r.Password, "p@ss:word#1")
	check(t, "store.redis.key_prefix", r.KeyPrefix, "ciba-prod:")
	check(t, "store.redis.timeout", r.Timeout, 1500*time.Millisecond)
	check(t, "store.redis.tls.enabled", r.TLS.Enabled, true)
	check(t, "store.redis.tls.ca_file", r.TLS.CAFile, ca)

	// A CA file without TLS is a mistake the file reports.
	t.Setenv("REDIS_TLS", "false")
	if _, err := Load(filepath.Join(examplesDir, "redis.yaml")); err == nil || !strings.Contains(err.Error(), "store.redis.tls.enabled") {
		t.Errorf("REDIS_CA_FILE without REDIS_TLS: %v, want a problem at store.redis.tls.enabled", err)
	}
}

// emailEnv are the variables examples/email.yaml reads, all unset.
var emailEnv = map[string]string{
	"CIBAPROXY_ISSUER": "", "CIBAPROXY_LISTEN": "", "CIBAPROXY_DATA": "",
	"SMTP_HOST": "", "SMTP_PORT": "", "SMTP_TLS": "", "SMTP_USERNAME": "", "SMTP_PASSWORD": "",
	"SMTP_FROM": "", "SMTP_CA_FILE": "",
}

func TestEmailExampleDefaults(t *testing.T) {
	setEnv(t, emailEnv)
	c, err := Load(filepath.Join(examplesDir, "email.yaml"))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	e := c.Channels.Email
	check(t, "channels.email.host", e.Host, "127.0.0.1")
	check(t, "channels.email.port", e.Port, 1025)
	check(t, "channels.email.tls", e.TLS, EmailNoTLS)
	check(t, "channels.email.username", e.Username, "")
	check(t, "channels.email.from", e.From, "Sign-in <signin@example.com>")
	check(t, "channels.email.subject", e.Subject, "Approve sign-in to {{.ClientName}}")
	check(t, "channels.email.template_file", e.TemplateFile, filepath.Join(examplesDir, "templates", "email.txt"))
	check(t, "channels.email.timeout", e.Timeout, 10*time.Second)
	check(t, "channels.webhook.url", c.Channels.Webhook.URL, "")
	check(t, "ciba.default_expiry", c.CIBA.DefaultExpiry, 10*time.Minute)
	for _, u := range c.Upstream.Local.Users {
		if a, _ := u.Claims["email"].(string); a == "" {
			t.Errorf("user %s has no email claim: the e-mail channel cannot reach them", u.Username)
		}
	}
	// The channel accepts these settings as the server builds it: the
	// loopback host allows tls none, and the template file runs.
	if _, err := email.New(emailConfig(e), nil); err != nil {
		t.Errorf("email.New: %v", err)
	}
}

func TestEmailExampleEnvironment(t *testing.T) {
	setEnv(t, emailEnv)
	setEnv(t, map[string]string{
		"SMTP_HOST":     "smtp.bank.example",
		"SMTP_PORT":     "587",
		"SMTP_TLS":      "starttls",
		"SMTP_USERNAME": "cibaproxy",
		"SMTP_PASSWORD": "smtp-secret",
		"SMTP_FROM":     "Bank sign-in <signin@bank.example>",
	})
	c, err := Load(filepath.Join(examplesDir, "email.yaml"))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	e := c.Channels.Email
	check(t, "channels.email.host", e.Host, "smtp.bank.example")
	check(t, "channels.email.port", e.Port, 587)
	check(t, "channels.email.tls", e.TLS, EmailSTARTTLS)
	check(t, "channels.email.username", e.Username, "cibaproxy")
	check(t, "channels.email.password", e.Password, "smtp-secret")
	check(t, "channels.email.from", e.From, "Bank sign-in <signin@bank.example>")
	if _, err := email.New(emailConfig(e), nil); err != nil {
		t.Errorf("email.New: %v", err)
	}
}

// emailConfig is what cmd/cibaproxy builds the channel from.
func emailConfig(e Email) email.Config {
	return email.Config{
		Host: e.Host, Port: e.Port, TLS: e.TLS, Username: e.Username, Password: e.Password,
		From: e.From, Subject: e.Subject, TemplateFile: e.TemplateFile, Timeout: e.Timeout,
	}
}

// TestEmailTemplate renders examples/templates/email.txt as the channel
// does: every field it names exists, and the link and binding message
// reach the body.
func TestEmailTemplate(t *testing.T) {
	path := filepath.Join(examplesDir, "templates", "email.txt")
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := template.New("email.txt").Funcs(template.FuncMap{"join": strings.Join}).Option("missingkey=error").Parse(string(text))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	data := email.TemplateData{
		ClientName: "Bank app", ClientID: "bank-app", BindingMessage: "Code 1234",
		Scopes: []string{"openid", "email"}, ExpiresAt: time.Date(2030, 1, 2, 3, 4, 0, 0, time.UTC),
		ApproveURL: "https://ciba.example.com/approve/ID", LoginHint: "alice",
	}
	var b bytes.Buffer
	if err := tmpl.Execute(&b, data); err != nil {
		t.Fatalf("execute: %v", err)
	}
	body := b.String()
	for _, want := range []string{"Bank app asks you to sign in as alice.", "    Code 1234\n", "openid, email",
		"03:04 UTC on Wednesday 2 January 2030", "\nhttps://ciba.example.com/approve/ID\n"} {
		if !strings.Contains(body, want) {
			t.Errorf("body lacks %q:\n%s", want, body)
		}
	}
	if strings.HasPrefix(body, "\n") || strings.Contains(body, "{{") {
		t.Errorf("the template comment left traces:\n%s", body)
	}

	data.BindingMessage = ""
	b.Reset()
	if err := tmpl.Execute(&b, data); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "shows this code") {
		t.Errorf("without a binding message the body still asks to check one:\n%s", b.String())
	}

	// A delegate's request with authorization_details lists them.
	data.ActsForUser, data.DetailsText = true, "1. payment_initiation\n   instructedAmount: 50.00 EUR\n"
	data.Details = []authzdetails.View{{Type: "payment_initiation"}}
	b.Reset()
	if err := tmpl.Execute(&b, data); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Bank app, acting on your behalf, asks you to sign in as alice.", "You are asked to approve:\n\n1. payment_initiation\n   instructedAmount: 50.00 EUR\n"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("body lacks %q:\n%s", want, b.String())
		}
	}
}

// yamlDocs decodes every document of a (multi-document) YAML file.
func yamlDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var docs []map[string]any
	dec := yaml.NewDecoder(f)
	for {
		var d map[string]any
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if d != nil {
			docs = append(docs, d)
		}
	}
}

// dig follows keys (string for a mapping, int for a list) into v.
func dig(v any, keys ...any) any {
	for _, k := range keys {
		switch k := k.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

// TestDeployYAMLParses parses every YAML file under deploy/, all documents.
func TestDeployYAMLParses(t *testing.T) {
	n := 0
	err := filepath.WalkDir(deployDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !(strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			return err
		}
		n++
		if docs := yamlDocs(t, path); len(docs) == 0 {
			t.Errorf("%s holds no YAML document", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 6 {
		t.Errorf("found %d YAML files under deploy/, want the compose file, its config and the Kubernetes manifests", n)
	}
}

func TestDeployCompose(t *testing.T) {
	docs := yamlDocs(t, filepath.Join(deployDir, "docker-compose.yml"))
	if len(docs) != 1 {
		t.Fatalf("%d documents, want 1", len(docs))
	}
	services, _ := docs[0]["services"].(map[string]any)
	for _, name := range []string{"redis", "cibaproxy-1", "cibaproxy-2", "lb", "demo-device"} {
		if services[name] == nil {
			t.Errorf("service %s is missing", name)
		}
	}
	redisCmd := strings.Join(toStrings(dig(services, "redis", "command")), " ")
	for _, want := range []string{"--appendonly yes", "--maxmemory-policy noeviction"} {
		if !strings.Contains(redisCmd, want) {
			t.Errorf("redis command %q lacks %q", redisCmd, want)
		}
	}
	// Both instances (merged from the x-cibaproxy anchor) run the shared
	// config, read-only, with the encryption key from the environment.
	for _, name := range []string{"cibaproxy-1", "cibaproxy-2"} {
		svc := services[name]
		if got := strings.Join(toStrings(dig(svc, "command")), " "); got != "serve --config /etc/cibaproxy/cibaproxy.yaml" {
			t.Errorf("%s command = %q", name, got)
		}
		if dig(svc, "read_only") != true {
			t.Errorf("%s is not read_only", name)
		}
		if !slices.Contains(toStrings(dig(svc, "volumes")), "./cibaproxy.yaml:/etc/cibaproxy/cibaproxy.yaml:ro") {
			t.Errorf("%s does not mount ./cibaproxy.yaml", name)
		}
		if s, _ := dig(svc, "environment", "CIBAPROXY_ENCRYPTION_KEY").(string); !strings.HasPrefix(s, "${CIBAPROXY_ENCRYPTION_KEY:?") {
			t.Errorf("%s: CIBAPROXY_ENCRYPTION_KEY = %q, want it required from the environment", name, s)
		}
	}
	if _, err := os.Stat(filepath.Join(deployDir, "haproxy.cfg")); err != nil {
		t.Errorf("the load balancer's config: %v", err)
	}

	// The config the instances run.
	setEnv(t, map[string]string{
		"CIBAPROXY_ISSUER":         "http://localhost:8080",
		"CIBAPROXY_ENCRYPTION_KEY": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
	})
	c, err := Load(filepath.Join(deployDir, "cibaproxy.yaml"))
	if err != nil {
		t.Fatalf("deploy/cibaproxy.yaml: %v", err)
	}
	check(t, "listen", c.Listen, ":8080")
	check(t, "store.type", c.Store.Type, StoreRedis)
	check(t, "store.redis.addrs", strings.Join(c.Store.Redis.Addrs, ","), "redis:6379")
	check(t, "encryption keys", len(c.Tokens.EncryptionKeys), 1)
	check(t, "webhook", c.Channels.Webhook.URL, "http://demo-device:9090/webhook")
}

func toStrings(v any) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, x := range v {
			s, _ := x.(string)
			out = append(out, s)
		}
		return out
	}
	return nil
}

// k8sObjects returns the objects of every manifest under deploy/kubernetes
// by kind.
func k8sObjects(t *testing.T) map[string][]map[string]any {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(deployDir, "kubernetes", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in deploy/kubernetes: %v", err)
	}
	objs := make(map[string][]map[string]any)
	for _, f := range files {
		for _, d := range yamlDocs(t, f) {
			kind, _ := d["kind"].(string)
			objs[kind] = append(objs[kind], d)
		}
	}
	return objs
}

func TestDeployKubernetes(t *testing.T) {
	objs := k8sObjects(t)
	for _, kind := range []string{"Kustomization", "Deployment", "Service", "ConfigMap", "PodDisruptionBudget"} {
		if len(objs[kind]) != 1 {
			t.Errorf("%d %s objects, want 1", len(objs[kind]), kind)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	dep := objs["Deployment"][0]
	check(t, "replicas", dig(dep, "spec", "replicas"), 3)
	check(t, "runAsNonRoot", dig(dep, "spec", "template", "spec", "securityContext", "runAsNonRoot"), true)
	containers, _ := dig(dep, "spec", "template", "spec", "containers").([]any)
	if len(containers) != 1 {
		t.Fatalf("%d containers, want 1", len(containers))
	}
	ctr := containers[0]
	check(t, "liveness probe path", dig(ctr, "livenessProbe", "httpGet", "path"), "/healthz")
	check(t, "readiness probe path", dig(ctr, "readinessProbe", "httpGet", "path"), "/readyz")
	check(t, "readOnlyRootFilesystem", dig(ctr, "securityContext", "readOnlyRootFilesystem"), true)
	check(t, "allowPrivilegeEscalation", dig(ctr, "securityContext", "allowPrivilegeEscalation"), false)
	if to, _ := dig(ctr, "readinessProbe", "timeoutSeconds").(int); to <= 3 {
		t.Errorf("readiness timeoutSeconds = %d, want more than store.redis.timeout (3 s)", to)
	}
	if dig(ctr, "resources", "requests") == nil || dig(ctr, "resources", "limits") == nil {
		t.Errorf("the container has no resource requests and limits")
	}
	if got := strings.Join(toStrings(dig(ctr, "args")), " "); got != "serve --config /etc/cibaproxy/cibaproxy.yaml" {
		t.Errorf("args = %q", got)
	}
	grace, _ := dig(dep, "spec", "template", "spec", "terminationGracePeriodSeconds").(int)

	// Every variable comes from the Secret; set them and load the config
	// of the ConfigMap as the pod would.
	env := map[string]string{}
	envs, _ := dig(ctr, "env").([]any)
	for _, e := range envs {
		name, _ := dig(e, "name").(string)
		if dig(e, "valueFrom", "secretKeyRef", "name") != "cibaproxy" {
			t.Errorf("env %s does not come from the Secret cibaproxy", name)
		}
		env[name] = "value-of-" + name
	}
	env["CIBAPROXY_ENCRYPTION_KEY"] = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	setEnv(t, env)
	text, _ := dig(objs["ConfigMap"][0], "data", "cibaproxy.yaml").(string)
	if text == "" {
		t.Fatal("the ConfigMap has no cibaproxy.yaml")
	}
	c, err := Parse([]byte(text), filepath.Join(t.TempDir(), "cibaproxy.yaml"))
	if err != nil {
		t.Fatalf("the ConfigMap's cibaproxy.yaml:\n%v", err)
	}
	for _, want := range []string{"${REDIS_PASSWORD}", "${CIBAPROXY_ENCRYPTION_KEY}", "${POS_TERMINAL_SECRET}"} {
		if !strings.Contains(text, want) {
			t.Errorf("the ConfigMap's config does not read %s", want)
		}
	}
	check(t, "listen", c.Listen, ":8080")
	check(t, "store.type", c.Store.Type, StoreRedis)
	check(t, "store.redis.password", c.Store.Redis.Password, "value-of-REDIS_PASSWORD")
	check(t, "encryption key id", c.Tokens.EncryptionKeys[0].ID, "value-of-CIBAPROXY_ENCRYPTION_KEY_ID")
	if !strings.HasPrefix(c.Issuer, "https://") {
		t.Errorf("issuer %q is not the public https URL", c.Issuer)
	}
	// The shutdown (long_poll + 10 s for requests, 10 s more for the
	// deliveries under way) fits in the grace period.
	if need := c.CIBA.LongPoll + 20*time.Second; time.Duration(grace)*time.Second <= need {
		t.Errorf("terminationGracePeriodSeconds = %d, want more than long_poll + 20s = %s", grace, need)
	}

	pdb := objs["PodDisruptionBudget"][0]
	check(t, "PDB selector", dig(pdb, "spec", "selector", "matchLabels", "app.kubernetes.io/name"), "cibaproxy")
	check(t, "Service selector", dig(objs["Service"][0], "spec", "selector", "app.kubernetes.io/name"), "cibaproxy")
	check(t, "pod label", dig(dep, "spec", "template", "metadata", "labels", "app.kubernetes.io/name"), "cibaproxy")
	check(t, "Service targetPort", dig(objs["Service"][0], "spec", "ports", 0, "targetPort"), dig(ctr, "ports", 0, "name"))

	// The kustomization lists every manifest.
	res := toStrings(dig(objs["Kustomization"][0], "resources"))
	files, _ := filepath.Glob(filepath.Join(deployDir, "kubernetes", "*.yaml"))
	for _, f := range files {
		if b := filepath.Base(f); b != "kustomization.yaml" && !slices.Contains(res, b) {
			t.Errorf("kustomization.yaml does not list %s", b)
		}
	}
}
