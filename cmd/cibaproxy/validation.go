package main

import (
	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/config"
	"github.com/cibaproxy/cibaproxy/internal/outbound"
	"github.com/cibaproxy/cibaproxy/internal/tracing"
	"github.com/cibaproxy/cibaproxy/internal/validate"
)

// buildValidator returns the consumption-device validation hook of cfg, or
// nil when none is configured. Its calls are held to the hook's own
// outbound policy (validation.allow_http, validation.allow_networks) and
// traced as "validation".
func buildValidator(cfg *config.Config, tr *tracing.Tracing) (ciba.Validator, error) {
	v := cfg.Validation
	if v.URL == "" {
		return nil, nil
	}
	out := outbound.New(v.Timeout, outbound.Guard(v.Policy()))
	out.HTTPClient().Transport = tr.Transport("validation", out.HTTPClient().Transport)
	return validate.New(validate.Config{URL: v.URL, Secret: []byte(v.Secret), Timeout: v.Timeout, Client: out})
}
