package config

import (
	"net/mail"
	"strings"
	"text/template"
	"time"
)

// Values of [Email.TLS].
const (
	EmailSTARTTLS = "starttls"
	EmailTLS      = "tls"
	EmailNoTLS    = "none"
)

// Email configures the e-mail authentication channel: each request is
// mailed to the user with the binding message and the approval link.
type Email struct {
	// Host is the SMTP server. Empty (default): the channel is off.
	Host string `yaml:"host"`

	// Port is the SMTP port. Default 587 (submission with STARTTLS), 465
	// with tls: tls.
	Port int `yaml:"port"`

	// TLS is "starttls" (default: the server must offer STARTTLS),
	// "tls" (implicit TLS, usually port 465) or "none" (only for a
	// server on a loopback address: the link in the message can approve
	// the request).
	TLS string `yaml:"tls"`

	// Username and Password log in with AUTH PLAIN (only over TLS). Use
	// ${VAR} for the password. Empty: no login.
	Username string `yaml:"username"`
	Password string `yaml:"password"`

	// From is the sender address, e.g. "Sign-in <noreply@bank.example>".
	// Required when Host is set.
	From string `yaml:"from"`

	// Subject is a Go text/template for the subject line; it sees
	// .ClientName, .ClientID, .BindingMessage and .LoginHint. Default
	// "Approve sign-in to {{.ClientName}}".
	Subject string `yaml:"subject"`

	// TemplateFile is an optional Go text/template file for the body,
	// replacing the built-in one; it also sees .Scopes, .ExpiresAt and
	// .ApproveURL. Relative to the configuration file.
	TemplateFile string `yaml:"template_file"`

	// CAFile is a PEM file of the CAs trusted for the SMTP server's
	// certificate; empty: the system's. Relative to the configuration file.
	CAFile string `yaml:"ca_file"`

	// Timeout bounds each delivery. Default 10s.
	Timeout time.Duration `yaml:"timeout"`
}

func (v *validator) emailDefaults(e *Email) {
	if e.Host == "" {
		return
	}
	if e.TLS == "" {
		e.TLS = EmailSTARTTLS
	}
	if e.Port == 0 {
		e.Port = 587
		if e.TLS == EmailTLS {
			e.Port = 465
		}
	}
	if e.Subject == "" {
		e.Subject = "Approve sign-in to {{.ClientName}}"
	}
	if !v.src.set["channels.email.timeout"] {
		e.Timeout = 10 * time.Second
	}
	e.TemplateFile = v.resolve(e.TemplateFile)
	e.CAFile = v.resolve(e.CAFile)
}

func (v *validator) checkEmail(e *Email) {
	if e.Host == "" {
		return
	}
	if e.Port < 1 || e.Port > 65535 {
		v.fail("channels.email.port", "must be a port from 1 to 65535, got %d", e.Port)
	}
	v.oneOf("channels.email.tls", e.TLS, EmailSTARTTLS, EmailTLS, EmailNoTLS)
	if e.From == "" {
		v.fail("channels.email.from", "required: the sender address, e.g. \"Sign-in <noreply@bank.example>\"")
	} else if _, err := mail.ParseAddress(e.From); err != nil {
		v.fail("channels.email.from", "not an e-mail address: %v", err)
	}
	if (e.Username == "") != (e.Password == "") {
		v.fail("channels.email.password", "username and password go together")
	}
	// The channel offers join (strings.Join) to its templates.
	if _, err := template.New("subject").Funcs(template.FuncMap{"join": strings.Join}).Parse(e.Subject); err != nil {
		v.fail("channels.email.subject", "not a valid template: %v", err)
	}
	if e.Timeout <= 0 {
		v.fail("channels.email.timeout", "must be positive, got %s", e.Timeout)
	}
	for path, f := range map[string]string{"channels.email.template_file": e.TemplateFile, "channels.email.ca_file": e.CAFile} {
		if f != "" {
			if _, err := readRegularFile(f); err != nil {
				v.fail(path, "cannot read: %v", err)
			}
		}
	}
}
