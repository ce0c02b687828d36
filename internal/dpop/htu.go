package dpop

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// NormalizeHTU returns the form of an htu (or of an endpoint's URL) that is
// compared (RFC 9449 §4.3 9): the URL without its query and fragment, after
// the syntax- and scheme-based normalisation of RFC 3986 §6.2.2 and §6.2.3 —
// scheme and host in lower case, percent-encoding in upper case and
// unreserved characters decoded, the default port dropped, an empty path
// made "/". Only absolute http and https URLs without user information are
// accepted.
func NormalizeHTU(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("dpop: htu: %w", err)
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "https" && scheme != "http" {
		return "", errors.New("dpop: htu: not an http or https URL")
	}
	if u.User != nil || u.Opaque != "" || u.Host == "" {
		return "", errors.New("dpop: htu: not an absolute URL with a host and no user information")
	}
	host := strings.ToLower(u.Hostname())
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port := u.Port(); port != "" && !(scheme == "https" && port == "443") && !(scheme == "http" && port == "80") {
		host += ":" + port
	}
	path := normalizePercent(u.EscapedPath())
	if path == "" {
		path = "/"
	}
	return scheme + "://" + host + path, nil
}

// normalizePercent decodes the percent-encoded unreserved characters of an
// escaped path and puts the hex digits of the others in upper case
// (RFC 3986 §6.2.2.1, §6.2.2.2). url.Parse has checked the escapes.
func normalizePercent(p string) string {
	if !strings.Contains(p, "%") {
		return p
	}
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] != '%' || i+2 >= len(p) {
			b.WriteByte(p[i])
			continue
		}
		hi, lo := unhex(p[i+1]), unhex(p[i+2])
		if hi < 0 || lo < 0 {
			b.WriteByte(p[i])
			continue
		}
		c := byte(hi<<4 | lo)
		if unreserved(c) {
			b.WriteByte(c)
		} else {
			b.WriteString("%" + strings.ToUpper(p[i+1:i+3]))
		}
		i += 2
	}
	return b.String()
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// unreserved reports whether c is an unreserved character (RFC 3986 §2.3).
func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}
