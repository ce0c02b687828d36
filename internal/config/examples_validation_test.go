package config

import (
	"path/filepath"
	"testing"
	"time"
)

func TestValidationExample(t *testing.T) {
	unsetEnv(t, "CIBAPROXY_ISSUER", "CIBAPROXY_LISTEN", "CIBAPROXY_DATA", "CIBAPROXY_WEBHOOK_URL",
		"VALIDATION_URL", "VALIDATION_SECRET", "CALLCENTRE_SECRET", "TELLER_SECRET")
	path := filepath.Join(examplesDir, "validation.yaml")
	c, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	v := c.Validation
	if v.URL != "http://127.0.0.1:9091/validate" || v.Timeout != 3*time.Second || v.FailOpen() || !v.AllowHTTP {
		t.Errorf("validation = %+v", v)
	}
	if c.Clients[0].ID != "callcentre" || c.Clients[0].SkipValidation || c.Clients[1].ID != "teller" || !c.Clients[1].SkipValidation {
		t.Errorf("clients = %+v", c.Clients)
	}

	// The production setup the file's comment gives.
	secret := "q2Yv3c1m0Jk9Vx8wPz7Lr6Ts5Ud4Ef3Gh2Ij1Kl0Mn="
	t.Setenv("VALIDATION_URL", "https://policy.example.com/ciba/validate")
	t.Setenv("VALIDATION_SECRET", secret)
	if c, err = Load(path); err != nil {
		t.Fatal(err)
	}
	if c.Validation.URL != "https://policy.example.com/ciba/validate" || c.Validation.Secret != secret {
		t.Errorf("the environment was not used: %+v", c.Validation)
	}
}
