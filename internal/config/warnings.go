package config

// Warnings are the settings of a valid configuration that are allowed but
// do nothing, or leave the server unable to do its job: each is a
// sentence saying what and why, for `cibaproxy check-config` to print and
// `cibaproxy serve` to log at start. Nil when there is none. They never
// quote a secret.
func (c *Config) Warnings() []string {
	var out []string
	if w := c.noChannelWarning(); w != "" {
		out = append(out, w)
	}
	if w := c.selfEnrollmentWarning(); w != "" {
		out = append(out, w)
	}
	return out
}

// noChannelWarning: without a channel (and with the local or oidc
// upstream, which do not relay CIBA requests to an IdP that reaches the
// user itself) nobody hears of a CIBA request, so each one expires.
func (c *Config) noChannelWarning() string {
	if len(c.Channels.Order) > 0 || c.Upstream.Type == UpstreamCIBA || !c.hasCIBAClients() {
		return ""
	}
	return "no channel configured (channels.webpush, channels.email or channels.webhook.url): nobody is told of a new CIBA request, " +
		"so nobody can approve one and each request expires; configure one (docs/webpush.md, docs/email.md, docs/webhook.md), " +
		"or for the quick start set CIBAPROXY_WEBHOOK_URL or run make run"
}

// hasCIBAClients reports whether a client uses CIBA (has a delivery mode),
// not only the device grant, whose user comes to the verification page by
// themselves, or introspection.
func (c *Config) hasCIBAClients() bool {
	for _, cl := range c.Clients {
		if cl.DeliveryMode != "" {
			return true
		}
	}
	return false
}

// selfEnrollmentWarning: self-enrolment is offered only to users whose
// approval method is "either" (approving with the password, then adding a
// passkey); with none, the switch does nothing. With another upstream the
// switch is an error (checkApproval), not a warning.
func (c *Config) selfEnrollmentWarning() string {
	if !c.Approval.Passkeys.SelfEnrollment || c.Upstream.Type != UpstreamLocal {
		return ""
	}
	for _, u := range c.Upstream.Local.Users {
		if m := u.ApprovalMethod; m == ApprovalEither || m == "" && c.Approval.Method == ApprovalEither {
			return ""
		}
	}
	return "approval.passkeys.self_enrollment is on but does nothing: it is offered only to users whose approval method is either " +
		"(they approve with their password, then add a passkey), and no user has it (approval.method is " + c.Approval.Method +
		" and no user sets approval_method: either); set approval.method: either (or a user's approval_method: either), " +
		"or enrol users with cibaproxy users enroll"
}
