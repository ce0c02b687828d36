package oidc

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// forwardedRequestHeaders are the request headers passed to the IdP's
// token endpoint: client authentication (RFC 6749 §2.3.1) and the DPoP
// proof (RFC 9449 §4.1).
var forwardedRequestHeaders = []string{"Authorization", "DPoP"}

// forwardedResponseHeaders are the answer's headers passed back to the
// client (RFC 6749 §5.1, RFC 6750 §3, RFC 9449 §8).
var forwardedResponseHeaders = []string{"Content-Type", "Cache-Control", "Pragma", "WWW-Authenticate", "DPoP-Nonce"}

// ForwardToken passes a token request with a grant other than CIBA
// (refresh_token, client_credentials …) through to the IdP's token
// endpoint: form is POSTed unchanged with the request's Authorization and
// DPoP headers, and the IdP's status, the headers a client needs and its
// body (at most 1 MiB) come back. Any answer of the IdP, 4xx and 5xx
// included, is returned without error; an IdP that cannot be reached is an
// error wrapping ciba.ErrUnavailable.
func (u *Upstream) ForwardToken(ctx context.Context, form url.Values, header http.Header) (status int, h http.Header, body []byte, err error) {
	idp, err := u.provider(ctx)
	if err != nil {
		return 0, nil, nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, idp.endpoint.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return 0, nil, nil, fmt.Errorf("oidc: token endpoint %q: %w", idp.endpoint.TokenURL, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "cibaproxy")
	for _, name := range forwardedRequestHeaders {
		if v := header.Values(name); len(v) > 0 {
			req.Header[name] = append([]string(nil), v...)
		}
	}
	resp, err := u.http.Do(req)
	if err != nil {
		return 0, nil, nil, unavailable(fmt.Errorf("oidc: forward to the identity provider's token endpoint: %w", err))
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return 0, nil, nil, unavailable(fmt.Errorf("oidc: read the identity provider's token response: %w", err))
	}
	if len(body) > maxBody {
		return 0, nil, nil, fmt.Errorf("oidc: the identity provider's token response is larger than %d bytes", maxBody)
	}
	h = http.Header{}
	for _, name := range forwardedResponseHeaders {
		if v := resp.Header.Values(name); len(v) > 0 {
			h[http.CanonicalHeaderKey(name)] = append([]string(nil), v...)
		}
	}
	return resp.StatusCode, h, body, nil
}
