package app

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/config"
	"github.com/cibaproxy/cibaproxy/internal/seal"
	"github.com/cibaproxy/cibaproxy/internal/store/embedded"
	"github.com/cibaproxy/cibaproxy/internal/store/memory"
	redisstore "github.com/cibaproxy/cibaproxy/internal/store/redis"
)

// OpenStore opens the store cfg names (store.type): in memory, the
// embedded file, or Redis. The caller closes it.
func OpenStore(ctx context.Context, cfg *config.Config) (ciba.Store, error) {
	switch cfg.Store.Type {
	case config.StoreMemory:
		return memory.New(), nil
	case config.StoreEmbedded:
		st, err := embedded.Open(ctx, cfg.Store.Path)
		if err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
		return st, nil
	case config.StoreRedis:
		r := cfg.Store.Redis
		rc := redisstore.Config{
			Addrs: r.Addrs, MasterName: r.MasterName, Cluster: r.Cluster,
			Username: r.Username, Password: r.Password,
			SentinelUsername: r.SentinelUsername, SentinelPassword: r.SentinelPassword,
			DB: r.DB, Timeout: r.Timeout, KeyPrefix: r.KeyPrefix, Retention: cfg.CIBA.ExpiredGrace,
			PollCacheSize: r.PollCacheSize,
			WaitReplicas:  r.WaitReplicas, WaitTimeout: r.WaitTimeout,
		}
		if r.PollCacheSize == 0 {
			rc.PollCacheSize = -1 // off; the store's 0 is its default
		}
		if r.TLS.Enabled {
			t, err := redisstore.LoadTLS(r.TLS.CAFile, r.TLS.CertFile, r.TLS.KeyFile, r.TLS.ServerName)
			if err != nil {
				return nil, fmt.Errorf("store.redis.tls: %w", err)
			}
			rc.TLS = t
		}
		st, err := redisstore.Open(ctx, rc)
		if err != nil {
			return nil, fmt.Errorf("open redis store: %w", err)
		}
		return st, nil
	}
	return nil, fmt.Errorf("store type %q is not supported", cfg.Store.Type)
}

// sealRing returns the token-encryption keys: the configured ones (then a
// key generated earlier, if any, only opens), or one generated on first
// start and kept in the store.
func sealRing(ctx context.Context, cfg *config.Config, st ciba.Store, log *slog.Logger) (*seal.Ring, error) {
	var ks []seal.Key
	for _, k := range cfg.Tokens.EncryptionKeys {
		ks = append(ks, seal.Key{ID: k.ID, Secret: k.Secret})
	}
	if len(ks) > 0 {
		// A key generated before keys were configured still opens what it
		// sealed: that is how the generated key is rotated.
		if secret, err := st.GetRecord(ctx, "server", "encryption-key"); err == nil && len(secret) == seal.KeySize &&
			!slices.ContainsFunc(ks, func(k seal.Key) bool { return k.ID == "store" }) {
			ks = append(ks, seal.Key{ID: "store", Secret: secret})
		} else if err != nil && !errors.Is(err, ciba.ErrNotFound) {
			return nil, fmt.Errorf("read the generated encryption key: %w", err)
		}
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

// serverSecret returns the random secret kept in the store under name,
// creating it on first start. Several instances sharing a store agree on it.
func serverSecret(ctx context.Context, st ciba.Store, name string, size int) ([]byte, bool, error) {
	for range 3 {
		v, err := st.GetRecord(ctx, "server", name)
		if err == nil {
			if len(v) != size {
				return nil, false, fmt.Errorf("server secret %q in the store has %d bytes, want %d", name, len(v), size)
			}
			return v, false, nil
		}
		if !errors.Is(err, ciba.ErrNotFound) {
			return nil, false, fmt.Errorf("read server secret %q: %w", name, err)
		}
		v = make([]byte, size)
		if _, err := rand.Read(v); err != nil {
			return nil, false, fmt.Errorf("generate server secret %q: %w", name, err)
		}
		err = st.PutRecord(ctx, "server", name, v, 0)
		if err == nil {
			return v, true, nil
		}
		if !errors.Is(err, ciba.ErrExists) {
			return nil, false, fmt.Errorf("store server secret %q: %w", name, err)
		}
		// Another instance created it first: read theirs.
	}
	return nil, false, fmt.Errorf("server secret %q: could not settle on a value", name)
}
