package app

import (
	"slices"
	"testing"

	"github.com/cibaproxy/cibaproxy/internal/authzdetails"
	"github.com/cibaproxy/cibaproxy/internal/clientauth"
	"github.com/cibaproxy/cibaproxy/internal/config"
)

// TestDiscoveryAuthzDetailsTypes: discovery lists
// authorization_details_types_supported (RFC 9396 §10) when types are
// configured, and not otherwise; a federated document never passes the
// provider's list on.
func TestDiscoveryAuthzDetailsTypes(t *testing.T) {
	t.Parallel()
	cr, err := clientauth.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	reg := registry{Live: clientauth.NewLive(cr)}
	cfg := &config.Config{Issuer: "https://ciba.example.com"}
	if _, ok := discovery(cfg, reg, nil)["authorization_details_types_supported"]; ok {
		t.Error("listed without types")
	}
	r, err := authzdetails.Compile(authzdetails.Schemas{"b": []byte(`{}`), "a": []byte(`{}`)}, authzdetails.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	reg.details = authzdetails.NewLive(authzdetails.Set{Registry: r})
	got, _ := discovery(cfg, reg, nil)["authorization_details_types_supported"].([]string)
	if !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("authorization_details_types_supported = %v", got)
	}
	fed := federatedDiscovery(map[string]any{"authorization_details_types_supported": []any{"x"}}, discovery(&config.Config{}, registry{Live: reg.Live}, nil))
	if _, ok := fed["authorization_details_types_supported"]; ok {
		t.Error("the provider's types are advertised")
	}
}
