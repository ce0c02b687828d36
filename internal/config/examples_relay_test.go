package config

import (
	"path/filepath"
	"testing"
	"time"
)

func TestRelayExample(t *testing.T) {
	unsetEnv(t, "CIBAPROXY_ISSUER", "CIBAPROXY_LISTEN", "CIBAPROXY_DATA", "IDP_ISSUER", "TELLER_SECRET", "KIOSK_SECRET", "KIOSK_NOTIFY_URL", "KIOSK_IDP_SECRET")
	c, err := Load(filepath.Join(examplesDir, "relay.yaml"))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if c.Upstream.Type != UpstreamCIBA || c.Upstream.CIBA.Issuer != "http://127.0.0.1:8081/realms/bank" || c.Upstream.CIBA.Timeout != 10*time.Second {
		t.Errorf("upstream = %+v", c.Upstream)
	}
	teller, kiosk := c.Clients[0].Credentials(), c.Clients[1].Credentials()
	if teller.ClientID != "teller" || teller.ClientSecret != "change-me-teller" || teller.Ping {
		t.Errorf("teller's credentials at the IdP = %+v, want its own, poll", teller)
	}
	if kiosk.ClientID != "cibaproxy-kiosk" || kiosk.AuthMethod != AuthClientSecretBasic || !kiosk.Ping {
		t.Errorf("kiosk's credentials at the IdP = %+v", kiosk)
	}

	t.Setenv("IDP_ISSUER", "https://idp.example.com/realms/bank")
	t.Setenv("KIOSK_IDP_SECRET", "s3cret")
	if c, err = Load(filepath.Join(examplesDir, "relay.yaml")); err != nil {
		t.Fatal(err)
	}
	if c.Upstream.CIBA.Issuer != "https://idp.example.com/realms/bank" || c.Clients[1].Credentials().ClientSecret != "s3cret" {
		t.Errorf("the environment was not used: %+v %+v", c.Upstream.CIBA, c.Clients[1].Credentials())
	}
}
