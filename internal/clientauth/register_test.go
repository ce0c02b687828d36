package clientauth

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	gojose "github.com/go-jose/go-jose/v4"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/clientmeta"
	"github.com/cibaproxy/cibaproxy/internal/jose"
)

// testOpts describe a client the way the tests write them; register turns
// them into checked metadata and a registration.
type testOpts struct {
	// Client is the domain view; an empty Mode means poll.
	Client     ciba.Client
	Secret     string
	SecretHash string
	// Methods empty: client_secret_basic with a secret, plus
	// private_key_jwt with keys.
	Methods                 []string
	JWKS                    gojose.JSONWebKeySet
	JWKSURI                 string
	RequestObjectAlg        string
	AllowHS256RequestObject bool
	TLSClientAuth           TLSClientAuth
	FAPI                    bool
}

// metadata is o as clientmeta describes a client.
func (o testOpts) metadata() clientmeta.Metadata {
	m := clientmeta.Metadata{
		ID:                      o.Client.ID,
		Name:                    o.Client.Name,
		Secret:                  o.Secret,
		SecretHash:              o.SecretHash,
		Methods:                 o.Methods,
		DeliveryMode:            string(o.Client.Mode),
		NotificationEndpoint:    o.Client.NotificationEndpoint,
		UserCodeParameter:       o.Client.RequireUserCode,
		Scopes:                  o.Client.Scopes,
		SkipValidation:          o.Client.SkipValidation,
		CertBoundAccessTokens:   o.Client.CertBoundAccessTokens,
		JWKSURI:                 o.JWKSURI,
		RequestSigningAlg:       o.RequestObjectAlg,
		AllowHS256RequestObject: o.AllowHS256RequestObject,
		TLSSubjectDN:            o.TLSClientAuth.SubjectDN,
		TLSSANDNS:               o.TLSClientAuth.SANDNS,
		TLSSANURI:               o.TLSClientAuth.SANURI,
		TLSSANEmail:             o.TLSClientAuth.SANEmail,
		ServerFAPI:              o.FAPI,
	}
	if m.DeliveryMode == "" {
		m.DeliveryMode = clientmeta.ModePoll
	}
	if len(o.JWKS.Keys) > 0 {
		raw, err := json.Marshal(o.JWKS)
		if err != nil {
			panic(err)
		}
		m.JWKS = raw
	}
	if len(m.Methods) == 0 {
		if o.Secret != "" || o.SecretHash != "" {
			m.Methods = append(m.Methods, MethodSecretBasic)
		}
		if len(o.JWKS.Keys) > 0 || o.JWKSURI != "" {
			m.Methods = append(m.Methods, MethodPrivateKeyJWT)
		}
	}
	return m
}

// register checks o and builds its registration.
func register(ctx context.Context, o testOpts) (*Registration, error) {
	v, problems := clientmeta.Check(o.metadata())
	if problems != nil {
		return nil, problems
	}
	return NewRegistration(ctx, v)
}

func TestHS256SecretLenAgrees(t *testing.T) {
	if clientmeta.MinHS256SecretLen != jose.MinHS256SecretLen {
		t.Fatalf("clientmeta.MinHS256SecretLen = %d, jose.MinHS256SecretLen = %d: a registered secret would be refused when verifying", clientmeta.MinHS256SecretLen, jose.MinHS256SecretLen)
	}
}

func TestNewRegistrationRefusesUncheckedAndPublic(t *testing.T) {
	if _, err := NewRegistration(t.Context(), nil); err == nil {
		t.Fatal("NewRegistration(nil) succeeded")
	}
	v, problems := clientmeta.Check(clientmeta.Metadata{ID: "tv", Methods: []string{clientmeta.MethodNone}, DeviceAuthorization: true})
	if problems != nil {
		t.Fatal(problems)
	}
	if _, err := NewRegistration(t.Context(), v); err == nil || !strings.Contains(err.Error(), "public") {
		t.Fatalf("NewRegistration(public) = %v, want an error", err)
	}
}
