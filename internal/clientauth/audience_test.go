package clientauth

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// TestAssertionAudienceTrailingSlash: a private_key_jwt assertion whose aud
// is the issuer, as the auth0 package signs it ("https://<host>/", with a
// trailing slash), or without the slash, authenticates whether cibaproxy's
// issuer is configured with or without one; the token endpoint URL and its
// alias stay accepted there; another host or path is invalid_client.
func TestAssertionAudienceTrailingSlash(t *testing.T) {
	alias := issuer + "/oauth/token"
	for _, configured := range []string{issuer, issuer + "/"} {
		for _, tt := range []struct {
			aud string
			ok  bool
		}{
			{issuer + "/", true},
			{issuer, true},
			{tokenEndpoint, true},
			{alias, true},
			{"https://other.example.com/", false},
			{issuer + "/other/", false},
		} {
			t.Run(configured+" aud "+tt.aud, func(t *testing.T) {
				reg := testRegistry(t)
				reg.AssertionPolicy.Issuer = configured
				reg.AssertionPolicy.EndpointAliases = map[string][]string{tokenEndpoint: {alias}}
				req := httptest.NewRequest(http.MethodPost, alias, nil)
				c, err := reg.Authenticate(t.Context(), req, assertionForm(assertion(t, clientKey(), "jwt", tt.aud, nil)), tokenEndpoint)
				switch {
				case tt.ok && (err != nil || c.ID() != "jwt"):
					t.Fatalf("refused: %v", err)
				case !tt.ok && (err == nil || ciba.AsError(err).Code != ciba.CodeInvalidClient || !strings.Contains(ciba.AsError(err).Description, "aud")):
					t.Fatalf("accepted, or not invalid_client naming aud: %v", err)
				}
			})
		}
	}
}
