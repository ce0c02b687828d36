package idp

import (
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
)

// maxLoginSteps bounds the redirects and form posts of one Login.
const maxLoginSteps = 20

// Login plays the user's browser without a browser: it opens authorizeURL
// with a cookie-keeping copy of hc, follows the IdP's redirects, fills in the
// devInteractions login form with accountID and password, submits the
// consent form if one is shown, and returns the first redirect that leaves
// the IdP's origin — the client's redirect_uri with code and state, or with
// error=access_denied when the login was refused — without following it.
// With response_mode=form_post the returned URL is the form's action with the
// posted fields as its query.
//
// hc's Jar is used when set (so a second Login shares the IdP session), else
// a new one; hc's own redirect policy is not used. The password is sent only
// in the form body.
func Login(ctx context.Context, hc *http.Client, authorizeURL, accountID, password string) (*url.URL, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	c := *hc
	if c.Jar == nil {
		jar, err := cookiejar.New(nil)
		if err != nil {
			return nil, fmt.Errorf("idp login: cookie jar: %w", err)
		}
		c.Jar = jar
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	next, err := url.Parse(authorizeURL)
	if err != nil {
		return nil, fmt.Errorf("idp login: authorize URL: %w", err)
	}
	origin := next.Scheme + "://" + next.Host
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, next.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("idp login: %w", err)
	}
	for range maxLoginSteps {
		resp, err := c.Do(req)
		if err != nil {
			return nil, fmt.Errorf("idp login: %s %s: %w", req.Method, req.URL.Path, err)
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("idp login: %s %s: read: %w", req.Method, req.URL.Path, err)
		}
		switch {
		case resp.StatusCode >= 300 && resp.StatusCode < 400:
			loc, err := resp.Location()
			if err != nil {
				return nil, fmt.Errorf("idp login: %s %s: redirect: %w", req.Method, req.URL.Path, err)
			}
			if loc.Scheme+"://"+loc.Host != origin {
				return loc, nil
			}
			req, err = http.NewRequestWithContext(ctx, http.MethodGet, loc.String(), nil)
			if err != nil {
				return nil, fmt.Errorf("idp login: %w", err)
			}
		case resp.StatusCode == http.StatusOK:
			f, err := parseForm(string(body))
			if err != nil {
				return nil, fmt.Errorf("idp login: %s %s: %w: %s", req.Method, req.URL.Path, err, snippet(body))
			}
			action, err := req.URL.Parse(f.action)
			if err != nil {
				return nil, fmt.Errorf("idp login: form action %q: %w", f.action, err)
			}
			if action.Scheme+"://"+action.Host != origin {
				// response_mode=form_post: the answer to the client is a
				// self-submitting form; hand it back as a query instead.
				out := *action
				out.RawQuery = f.values.Encode()
				return &out, nil
			}
			for _, in := range f.inputs {
				switch {
				case in.typ == "password":
					f.values.Set(in.name, password)
				case in.name == "login" || in.name == "username" || in.name == "email":
					f.values.Set(in.name, accountID)
				}
			}
			req, err = http.NewRequestWithContext(ctx, http.MethodPost, action.String(), strings.NewReader(f.values.Encode()))
			if err != nil {
				return nil, fmt.Errorf("idp login: %w", err)
			}
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		default:
			return nil, fmt.Errorf("idp login: %s %s: status %d: %s", req.Method, req.URL.Path, resp.StatusCode, snippet(body))
		}
	}
	return nil, fmt.Errorf("idp login: no redirect out of %s after %d steps", origin, maxLoginSteps)
}

// form is the first POST form of a page: its action, its inputs and the
// values of its hidden inputs.
type form struct {
	action string
	inputs []input
	values url.Values
}

type input struct{ name, typ string }

var (
	formRe  = regexp.MustCompile(`(?is)<form\b([^>]*)>(.*?)</form>`)
	inputRe = regexp.MustCompile(`(?is)<input\b([^>]*)>`)
	attrRe  = regexp.MustCompile(`(?s)([a-zA-Z_:][-a-zA-Z0-9_:.]*)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))`)
	tagRe   = regexp.MustCompile(`(?s)<[^>]*>`)
	spaceRe = regexp.MustCompile(`\s+`)
)

// parseForm finds the first form with method post in page. The pages are
// node-oidc-provider's devInteractions templates: plain, escaped HTML.
func parseForm(page string) (form, error) {
	for _, m := range formRe.FindAllStringSubmatch(page, -1) {
		attrs := parseAttrs(m[1])
		if !strings.EqualFold(attrs["method"], "post") {
			continue
		}
		f := form{action: attrs["action"], values: url.Values{}}
		for _, im := range inputRe.FindAllStringSubmatch(m[2], -1) {
			a := parseAttrs(im[1])
			name := a["name"]
			if name == "" {
				continue
			}
			typ := strings.ToLower(a["type"])
			if typ == "" {
				typ = "text"
			}
			f.inputs = append(f.inputs, input{name: name, typ: typ})
			if typ == "hidden" {
				f.values.Set(name, a["value"])
			}
		}
		return f, nil
	}
	return form{}, errors.New("no POST form on the page")
}

// parseAttrs returns a tag's attributes, names lower-cased, values unescaped.
func parseAttrs(s string) map[string]string {
	out := map[string]string{}
	for _, m := range attrRe.FindAllStringSubmatch(s, -1) {
		out[strings.ToLower(m[1])] = html.UnescapeString(m[2] + m[3] + m[4])
	}
	return out
}

// snippet is the start of a page's text, for error messages.
func snippet(body []byte) string {
	s := strings.TrimSpace(spaceRe.ReplaceAllString(html.UnescapeString(tagRe.ReplaceAllString(string(body), " ")), " "))
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}
