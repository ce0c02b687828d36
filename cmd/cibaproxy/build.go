package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/channel/webhook"
	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/clientauth"
	"github.com/cibaproxy/cibaproxy/internal/config"
	"github.com/cibaproxy/cibaproxy/internal/httpapi"
	"github.com/cibaproxy/cibaproxy/internal/jose"
	"github.com/cibaproxy/cibaproxy/internal/keys"
	"github.com/cibaproxy/cibaproxy/internal/notify"
	"github.com/cibaproxy/cibaproxy/internal/outbound"
	"github.com/cibaproxy/cibaproxy/internal/seal"
	"github.com/cibaproxy/cibaproxy/internal/store/embedded"
	"github.com/cibaproxy/cibaproxy/internal/store/memory"
	"github.com/cibaproxy/cibaproxy/internal/upstream/local"
)

// app is the wired server.
type app struct {
	service *ciba.Service
	handler http.Handler
	store   ciba.Store
}

func (a *app) close() { _ = a.store.Close() }

// build wires the parts the configuration names. cmd/ only wires: every
// decision lives in the packages.
func build(ctx context.Context, cfg *config.Config, log *slog.Logger) (a *app, err error) {
	st, err := openStore(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = st.Close()
		}
	}()

	signer, err := keys.LoadOrCreate(ctx, st, cfg.Tokens.SigningKeyFile)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	ring, err := sealRing(ctx, cfg, st, log)
	if err != nil {
		return nil, err
	}
	callbackKey, _, err := serverSecret(ctx, st, "callback-key", 32)
	if err != nil {
		return nil, err
	}
	csrfKey, _, err := serverSecret(ctx, st, "csrf-key", 32)
	if err != nil {
		return nil, err
	}

	replay := jose.NewStoreReplay(st, "jti")
	registry, err := buildClients(ctx, cfg, replay)
	if err != nil {
		return nil, err
	}
	auth := &clientauth.Authenticator{Registry: registry.Registry, RequestObjects: jose.RequestObjectPolicy{
		Issuer:    cfg.Issuer,
		Audiences: []string{cfg.Issuer + httpapi.PathBCAuthz},
		Replay:    replay,
	}}

	users := make([]local.User, 0, len(cfg.Upstream.Local.Users))
	for _, u := range cfg.Upstream.Local.Users {
		users = append(users, local.User{
			Username: u.Username, Subject: u.Subject, Claims: u.Claims,
			PasswordHash: []byte(u.PasswordHash), UserCodeHash: []byte(u.UserCodeHash),
		})
	}
	up, err := local.New(local.Config{
		Issuer:          cfg.Issuer,
		Users:           users,
		AccessTokenTTL:  cfg.Tokens.AccessTokenTTL,
		IDTokenTTL:      cfg.Tokens.IDTokenTTL,
		RefreshTokenTTL: cfg.Tokens.RefreshTokenTTL,
		Signer:          signer,
		Hints: &clientauth.Hints{
			Registry:        registry.Registry,
			IDTokens:        jose.IDTokenHintPolicy{Issuer: cfg.Issuer, KeySet: signer.KeySet()},
			LoginHintTokens: jose.HintTokenPolicy{Issuer: cfg.Issuer},
		},
		LeftHash: keys.LeftHash,
		Store:    st,
	})
	if err != nil {
		return nil, err
	}

	out := outbound.New(10 * time.Second)
	var channel ciba.Channel
	if cfg.Channels.Webhook.URL != "" {
		channel = webhook.New(cfg.Channels.Webhook.URL, outbound.New(cfg.Channels.Webhook.Timeout))
	}
	svc, err := ciba.NewService(ciba.Config{
		DefaultExpiry:     cfg.CIBA.DefaultExpiry,
		MaxExpiry:         cfg.CIBA.MaxExpiry,
		Interval:          cfg.CIBA.Interval,
		PollTolerance:     500 * time.Millisecond,
		LongPoll:          cfg.CIBA.LongPoll,
		ExpiredGrace:      cfg.CIBA.ExpiredGrace,
		BindingMessageMax: cfg.CIBA.BindingMessageMax,
		CallbackURL:       cfg.Issuer + httpapi.PathCallback,
		ApproveURL:        func(id string) string { return cfg.Issuer + httpapi.PathApprove + id },
	}, ciba.Deps{
		Store:       st,
		Upstream:    up,
		Minter:      up,
		Sealer:      ring,
		Channel:     channel,
		Notifier:    notify.HTTP{Client: out},
		Clients:     registry.Client,
		CallbackKey: callbackKey,
		Logger:      log,
	})
	if err != nil {
		return nil, err
	}

	srv := &httpapi.Server{
		Issuer:    cfg.Issuer,
		Service:   svc,
		Clients:   auth,
		Refresher: up,
		Approval: &httpapi.Approval{
			Service: svc, Passwords: up, Key: csrfKey,
			Secure: strings.HasPrefix(cfg.Issuer, "https://"),
		},
		Discovery: discovery(cfg, registry, up),
		JWKS:      func() any { return signer.PublicJWKS() },
		Ready: func(ctx context.Context) error {
			_, err := st.GetRecord(ctx, "server", "callback-key")
			return err
		},
		Logger: log,
	}
	return &app{service: svc, handler: srv.Handler(), store: st}, nil
}

func openStore(ctx context.Context, cfg *config.Config) (ciba.Store, error) {
	switch cfg.Store.Type {
	case config.StoreMemory:
		return memory.New(), nil
	case config.StoreEmbedded:
		st, err := embedded.Open(ctx, cfg.Store.Path)
		if err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
		return st, nil
	}
	return nil, fmt.Errorf("store type %q is not supported", cfg.Store.Type)
}

// sealRing returns the token-encryption keys: the configured ones, or one
// generated on first start and kept in the store.
func sealRing(ctx context.Context, cfg *config.Config, st ciba.Store, log *slog.Logger) (*seal.Ring, error) {
	var ks []seal.Key
	for _, k := range cfg.Tokens.EncryptionKeys {
		ks = append(ks, seal.Key{ID: k.ID, Secret: k.Secret})
	}
	if len(ks) == 0 {
		secret, created, err := serverSecret(ctx, st, "encryption-key", seal.KeySize)
		if err != nil {
			return nil, err
		}
		if created {
			log.Warn("no tokens.encryption_keys configured: generated one and kept it in the store; configure keys to keep them apart from the data they protect")
		}
		ks = []seal.Key{{ID: "store", Secret: secret}}
	}
	return seal.NewRing(ks...)
}
