package config

import (
	"fmt"
	"strings"
)

// unsetFallbacks are the values where an empty value silently stands for
// cibaproxy's own state instead of the operator's: another database, other
// keys, another key space. A ${VAR} reference without a default to an
// unset variable in one of them is a problem in strict mode (serve,
// check-config, reload), because the variable was most likely meant to be
// set (a unit file or container that lost its environment) and falling
// back would make the operator's data or keys seem gone. Each maps to
// what would happen instead.
//
// The rule is deliberately not "every unset ${VAR}": the examples and
// deploy files use ${VAR} for optional values that an unset variable
// turns off (channels.webhook.url, Redis and SMTP usernames and passwords,
// ca_file), docs/configuration.md promises that an empty duration, number
// or boolean gets its default, and such a fallback is either what the
// file means or fails visibly (a server that refuses the connection).
// Failing on those would break configurations that follow the docs.
var unsetFallbacks = map[string]string{
	"store.type":              "the store would be the embedded one (" + defaultStorePath + ") instead of the one you chose",
	"store.path":              "the embedded store would open another database file than yours (" + defaultStorePath + " when empty), where your data is not",
	"store.redis.key_prefix":  "the store would read and write keys under another prefix (" + defaultRedisPrefix + " when empty), where your data is not",
	"tokens.signing_key_file": "cibaproxy would sign tokens with keys it generates instead of your key, so clients holding your public key reject them",
}

// refuseUnsetFallbacks adds, in strict mode, a problem for each value of
// unsetFallbacks that refers to an unset variable without a default. It
// names the variable and how to say that unset is fine: ${VAR:-}. A
// variable set to "" is not refused: that is an explicit choice.
func (c *collector) refuseUnsetFallbacks() {
	if c.tolerant {
		return
	}
	for _, u := range c.unset {
		what, ok := unsetFallbacks[u.path]
		if !ok {
			continue
		}
		refs := make([]string, len(u.names))
		fixes := make([]string, len(u.names))
		for i, n := range u.names {
			refs[i] = "${" + n + "}"
			fixes[i] = "${" + n + ":-}"
		}
		// Not c.add: the message names the variables itself, and
		// source.why would name them a second time.
		if c.isBad(u.src, u.path) {
			continue
		}
		c.problems = append(c.problems, Problem{
			File: u.src.file,
			Path: oneLine(u.path),
			Line: u.src.line(u.path),
			Message: oneLine(fmt.Sprintf("refers to %s, which is not set: %s; set it, or write %s if unset is meant to leave the value empty",
				strings.Join(refs, " and "), what, strings.Join(fixes, " and "))),
		})
	}
}
