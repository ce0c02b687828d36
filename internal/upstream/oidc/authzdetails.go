package oidc

import (
	"context"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// The oidc upstream implements ciba.DetailsChecker: a request's
// authorization_details go to the IdP in the authorization request, so
// details the IdP cannot take are refused at bc-authorize, never dropped.
var _ ciba.DetailsChecker = (*Upstream)(nil)

// CheckAuthzDetails implements ciba.DetailsChecker: every type in details
// (canonical JSON, checked at bc-authorize) must be listed in the IdP's
// discovery as authorization_details_types_supported (RFC 9396 §10), else
// the request is invalid_authorization_details naming the type
// (ciba.CheckProviderDetailTypes). An IdP not discovered yet wraps
// ciba.ErrUnavailable.
func (u *Upstream) CheckAuthzDetails(ctx context.Context, _ *ciba.Client, details string) error {
	idp, err := u.provider(ctx)
	if err != nil {
		return err
	}
	if e := ciba.CheckProviderDetailTypes(details, idp.authzTypes); e != nil {
		return e
	}
	return nil
}
