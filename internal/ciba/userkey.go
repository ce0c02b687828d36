package ciba

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"unicode"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

// The per-user limit (Deps.UserLimit) is keyed by what identifies the user
// when the request is accepted:
//
//   - a verified subject, when the upstream resolved one (the local
//     upstream for every hint; the oidc upstream for an id_token_hint it
//     verified): the subject as it is, since subjects are exact
//     identifiers;
//   - otherwise the name the client gave, normalised (userName): the
//     login_hint of an oidc or relayed request, whose user is only known
//     once they sign in at the upstream, and the user a relayed
//     id_token_hint or login_hint_token names, read without verifying it
//     (the upstream verifies it; Deps.HintSubject).
//
// Never the empty key: a request whose hint names no one is refused before
// the limit. The key is a hash, so each bucket costs the same few bytes
// whatever the hint, and no limiter (in memory or in Redis) holds users'
// e-mail addresses or phone numbers.

// userName normalises a name of a user for the per-user limit so that the
// variants a client might send for one user share one bucket: compatibility
// forms are unified (NFKC: full-width letters, ligatures), case is folded
// (consistent with strings.EqualFold, with which the oidc upstream compares
// e-mail addresses), and white space, control and format characters (zero
// width space, soft hyphen) are dropped wherever they are. Two distinct
// users whose names differ only in these share a bucket: the safe side.
func userName(s string) string {
	s = norm.NFKC.String(cases.Fold().String(norm.NFKC.String(s)))
	return strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) || unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == unicode.ReplacementChar {
			return -1
		}
		return r
	}, s)
}

// userKey is the per-user limit key of a user known by a verified subject
// (sub not "") or else by a name a client gave; "" when both are empty.
func userKey(sub, name string) string {
	var kind, v string
	switch {
	case sub != "":
		kind, v = "sub", sub
	default:
		if v = userName(name); v == "" {
			return ""
		}
		kind = "name"
	}
	h := sha256.Sum256([]byte("cibaproxy user\x00" + kind + "\x00" + v))
	return hex.EncodeToString(h[:16])
}
