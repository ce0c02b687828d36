package config

import (
	"net"
	"strconv"
	"time"
)

// StoreRedis is the value of [Store.Type] for the Redis store.
const StoreRedis = "redis"

// Redis configures the redis store: several cibaproxy instances share
// their state through one Redis (or Valkey) deployment.
type Redis struct {
	// Addrs are host:port addresses. One address of a standalone server;
	// with MasterName, the Sentinel addresses; several without MasterName,
	// the seed nodes of a Redis Cluster. Required.
	Addrs []string `yaml:"addrs"`

	// MasterName is the Sentinel master set name; empty when not using
	// Sentinel.
	MasterName string `yaml:"master_name"`

	// Cluster selects Redis Cluster with a single address (a cluster
	// configuration endpoint); several addresses without MasterName are
	// a cluster anyway.
	Cluster bool `yaml:"cluster"`

	// SentinelUsername and SentinelPassword authenticate with the
	// Sentinels themselves, when they need it.
	SentinelUsername string `yaml:"sentinel_username"`
	SentinelPassword string `yaml:"sentinel_password"`

	// Timeout bounds each dial, read and write to Redis. Default 3s. A
	// poll waits at most this long for Redis before it answers
	// temporarily_unavailable.
	Timeout time.Duration `yaml:"timeout"`

	// Username and Password authenticate with Redis ACLs (AUTH). Use
	// ${VAR} for the password.
	Username string `yaml:"username"`
	Password string `yaml:"password"`

	// DB is the database number (standalone and Sentinel only). Default 0.
	DB int `yaml:"db"`

	// KeyPrefix starts every key cibaproxy writes, so that one Redis can
	// hold several deployments. Default "cibaproxy:".
	KeyPrefix string `yaml:"key_prefix"`

	// PollCacheSize is how many pending requests each instance remembers,
	// so that polls of them are paced without a round trip to Redis
	// (docs/deployment.md). Default 200000; 0 turns it off, and every poll
	// then paces the request in Redis.
	PollCacheSize int `yaml:"poll_cache_size"`

	// WaitReplicas is how many replicas must confirm each write cibaproxy
	// acknowledges to a client (WAIT) before it answers, so that the
	// write survives a failover; when fewer confirm within WaitTimeout
	// the client hears temporarily_unavailable. Default 1 with Sentinel
	// (master_name) or a Cluster, 0 (no wait) for a standalone server.
	WaitReplicas int `yaml:"wait_replicas"`

	// WaitTimeout bounds each WAIT. Default 500ms; shorter than Timeout.
	WaitTimeout time.Duration `yaml:"wait_timeout"`

	// TLS configures TLS to Redis; off unless Enabled.
	TLS RedisTLS `yaml:"tls"`
}

// RedisTLS configures TLS to Redis.
type RedisTLS struct {
	// Enabled turns TLS on.
	Enabled bool `yaml:"enabled"`
	// CAFile is a PEM file of the CAs trusted for the server certificate;
	// empty: the system's. Relative to the configuration file.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a PEM client certificate and key, for
	// servers that ask for one (tls-auth-clients). Relative to the
	// configuration file.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName overrides the name checked in the server certificate.
	ServerName string `yaml:"server_name"`
}

const defaultRedisPrefix = "cibaproxy:"

// DefaultRedisWaitTimeout is the default of store.redis.wait_timeout.
const DefaultRedisWaitTimeout = 500 * time.Millisecond

// replicated reports whether r names a topology with replicas that can
// take over from the master: Sentinel or Cluster.
func (r *Redis) replicated() bool {
	return r.MasterName != "" || r.Cluster || len(r.Addrs) > 1
}

// DefaultPollCacheSize is the default of store.redis.poll_cache_size.
const DefaultPollCacheSize = 200_000

func (v *validator) redisDefaults(r *Redis) {
	if r.KeyPrefix == "" {
		r.KeyPrefix = defaultRedisPrefix
	}
	if !v.src.set["store.redis.timeout"] {
		r.Timeout = 3 * time.Second
	}
	if !v.src.set["store.redis.poll_cache_size"] {
		r.PollCacheSize = DefaultPollCacheSize
	}
	if !v.src.set["store.redis.wait_replicas"] && r.replicated() {
		r.WaitReplicas = 1
	}
	if !v.src.set["store.redis.wait_timeout"] {
		r.WaitTimeout = DefaultRedisWaitTimeout
	}
	r.TLS.CAFile = v.resolve(r.TLS.CAFile)
	r.TLS.CertFile = v.resolve(r.TLS.CertFile)
	r.TLS.KeyFile = v.resolve(r.TLS.KeyFile)
}

func (v *validator) checkRedis(s *Store) {
	r := &s.Redis
	if s.Path != "" {
		v.fail("store.path", "must be empty for the redis store, which keeps nothing on local disk")
	}
	v.checkRedisAddrs(r.Addrs)
	if r.Timeout <= 0 {
		v.fail("store.redis.timeout", "must be positive, got %s", r.Timeout)
	}
	if r.MasterName != "" && r.Cluster {
		v.fail("store.redis.cluster", "a Sentinel deployment (master_name) is not a cluster; set one of them")
	}
	if r.MasterName == "" && (len(r.Addrs) > 1 || r.Cluster) && r.DB != 0 {
		v.fail("store.redis.db", "must be 0 with several addresses (a Redis Cluster has only database 0), got %d", r.DB)
	}
	if r.DB < 0 {
		v.fail("store.redis.db", "must not be negative, got %d", r.DB)
	}
	if r.PollCacheSize < 0 {
		v.fail("store.redis.poll_cache_size", "must not be negative (0 turns the cache off), got %d", r.PollCacheSize)
	}
	v.checkRedisWait(r)
	v.checkRedisTLS(&r.TLS)
}

// checkRedisAddrs checks store.redis.addrs: at least one host:port.
func (v *validator) checkRedisAddrs(addrs []string) {
	if len(addrs) == 0 {
		v.fail("store.redis.addrs", "required: at least one host:port, e.g. [127.0.0.1:6379]")
	}
	for i, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil || host == "" {
			v.fail(joinIndex("store.redis.addrs", i), "must be host:port, e.g. redis.internal:6379, got %q", a)
			continue
		}
		if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
			v.fail(joinIndex("store.redis.addrs", i), "the port must be a number from 1 to 65535, got %q", port)
		}
	}
}

// checkRedisTLS checks store.redis.tls: its files are readable, and given
// only with enabled.
func (v *validator) checkRedisTLS(t *RedisTLS) {
	if !t.Enabled && (t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != "") {
		v.fail("store.redis.tls.enabled", "must be true when other tls settings are given")
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		v.fail("store.redis.tls.cert_file", "cert_file and key_file go together")
	}
	for path, f := range map[string]string{"store.redis.tls.ca_file": t.CAFile, "store.redis.tls.cert_file": t.CertFile, "store.redis.tls.key_file": t.KeyFile} {
		if f != "" {
			if _, err := readRegularFile(f); err != nil {
				v.fail(path, "cannot read: %v", err)
			}
		}
	}
}

// checkRedisWait checks store.redis.wait_replicas and wait_timeout.
func (v *validator) checkRedisWait(r *Redis) {
	if r.WaitReplicas < 0 {
		v.fail("store.redis.wait_replicas", "must not be negative (0 does not wait), got %d", r.WaitReplicas)
	}
	if r.WaitTimeout < time.Millisecond {
		v.fail("store.redis.wait_timeout", "must be at least 1ms, got %s", r.WaitTimeout)
	} else if r.WaitReplicas > 0 && r.Timeout > 0 && r.WaitTimeout >= r.Timeout {
		v.fail("store.redis.wait_timeout", "must be shorter than store.redis.timeout (%s), which bounds the read of WAIT's answer, got %s", r.Timeout, r.WaitTimeout)
	}
}
