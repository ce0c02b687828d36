package idp

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/cibaproxy/cibaproxy/internal/fault"
)

// withPing is an upstream's own credentials type that embeds Credentials,
// as the ciba upstream's does.
type withPing struct {
	Credentials
	Ping bool
}

// TestCheckClients: at least one client; each needs its client_id and
// secret at the IdP and a supported authentication method; the error names
// the upstream and the client, never the secret; a type that embeds
// Credentials is checked the same.
func TestCheckClients(t *testing.T) {
	good := Credentials{ClientID: "at-idp", ClientSecret: "s3cret"}
	for _, m := range []string{"", AuthMethodBasic, AuthMethodPost} {
		c := good
		c.AuthMethod = m
		if err := CheckClients("test", map[string]Credentials{"app": c}); err != nil {
			t.Errorf("auth method %q: %v", m, err)
		}
	}
	if err := CheckClients("test", map[string]withPing{"app": {Credentials: good, Ping: true}}); err != nil {
		t.Errorf("an embedding type: %v", err)
	}
	err := CheckClients("test", map[string]withPing{"tv": {Credentials: Credentials{ClientID: "at-idp"}}})
	if err == nil || !strings.HasPrefix(err.Error(), `test: client "tv": the client_id and client_secret`) {
		t.Errorf("an embedding type without a secret: %v", err)
	}
	for name, tc := range map[string]struct {
		clients map[string]Credentials
		want    string
	}{
		"no client":      {nil, "test: no client has credentials at the identity provider"},
		"no secret":      {map[string]Credentials{"app": {ClientID: "at-idp"}}, `test: client "app": the client_id and client_secret`},
		"no client_id":   {map[string]Credentials{"app": {ClientSecret: "s3cret"}}, `test: client "app": the client_id and client_secret`},
		"another method": {map[string]Credentials{"app": {ClientID: "at-idp", ClientSecret: "s3cret", AuthMethod: "private_key_jwt"}}, `test: client "app": auth method "private_key_jwt" is not supported`},
	} {
		err := CheckClients("test", tc.clients)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error starting %q", name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: the error quotes the secret: %v", name, err)
		}
	}
}

// TestMetadata: the Loader's Metadata is the document Config.Document
// returns, as a fresh object each time, once discovery succeeded; while
// the IdP cannot be reached, Get's error.
func TestMetadata(t *testing.T) {
	op := newTestIdP(t)
	l, _ := newTestLoader(t, op, func(c *Config[doc]) {
		c.Document = func(d *doc) []byte {
			raw, _ := json.Marshal(d)
			return raw
		}
	})
	op.set(func(op *testIdP) { op.discoveryDown = true })
	if _, err := l.Metadata(context.Background()); !errors.Is(err, fault.ErrUnavailable) {
		t.Fatalf("Metadata with the IdP down: %v, want unavailable", err)
	}
	op.set(func(op *testIdP) { op.discoveryDown = false })
	l, _ = newTestLoader(t, op, func(c *Config[doc]) {
		c.Document = func(d *doc) []byte {
			raw, _ := json.Marshal(d)
			return raw
		}
	})
	m, err := l.Metadata(context.Background())
	if err != nil || m["issuer"] != op.srv.URL || m["jwks_uri"] != op.srv.URL+"/jwks" {
		t.Fatalf("Metadata = %v, %v", m, err)
	}
	m["issuer"] = "changed"
	if again, _ := l.Metadata(context.Background()); again["issuer"] != op.srv.URL {
		t.Fatal("Metadata returned a shared object")
	}
}
