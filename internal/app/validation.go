package app

import (
	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/config"
	"github.com/cibaproxy/cibaproxy/internal/outbound"
	"github.com/cibaproxy/cibaproxy/internal/tracing"
	"github.com/cibaproxy/cibaproxy/internal/validate"
)

// buildValidator returns the consumption-device validation hook of cfg, or
// nil when none is configured. Its URL is the operator's, so, as for the
// webhook channel (buildChannel), its calls are not restricted by address:
// a policy service is usually internal. outbound.New still follows no
// redirects and bounds each call's time; config.Load has required https
// unless validation.allow_http. The calls are traced as "validation".
func buildValidator(cfg *config.Config, tr *tracing.Tracing) (ciba.Validator, error) {
	v := cfg.Validation
	if v.URL == "" {
		return nil, nil
	}
	out := outbound.New(v.Timeout)
	out.HTTPClient().Transport = tr.Transport("validation", out.HTTPClient().Transport)
	return validate.New(validate.Config{URL: v.URL, Secret: []byte(v.Secret), Timeout: v.Timeout, Client: out})
}
