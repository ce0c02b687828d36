package oidc

import (
	"context"
	"encoding/json"
	"slices"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// The oidc upstream implements ciba.DetailsChecker: a request's
// authorization_details go to the IdP in the authorization request, so
// details the IdP cannot take are refused at bc-authorize, never dropped.
var _ ciba.DetailsChecker = (*Upstream)(nil)

// CheckAuthzDetails implements ciba.DetailsChecker: every type in details
// (canonical JSON, checked at bc-authorize) must be listed in the IdP's
// discovery as authorization_details_types_supported (RFC 9396 §10), else
// the request is invalid_authorization_details naming the type. An IdP
// not discovered yet wraps ciba.ErrUnavailable.
func (u *Upstream) CheckAuthzDetails(ctx context.Context, c *ciba.Client, details string) error {
	idp, err := u.provider(ctx)
	if err != nil {
		return err
	}
	var list []struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal([]byte(details), &list); err != nil {
		return &ciba.Error{Code: ciba.CodeInvalidAuthorizationDetails, Description: "authorization_details could not be read", Err: err}
	}
	for _, d := range list {
		if !slices.Contains(idp.authzTypes, d.Type) {
			return ciba.Errorf(ciba.CodeInvalidAuthorizationDetails,
				"authorization_details type %q cannot be passed to the identity provider: its discovery does not list it in authorization_details_types_supported; the request is refused rather than sent without it", d.Type)
		}
	}
	return nil
}
