package config

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRedisWaitDefaults: WAIT for one replica by default with Sentinel or a
// Cluster, none for a standalone server; an explicit value wins.
func TestRedisWaitDefaults(t *testing.T) {
	for _, tt := range []struct {
		redis    string
		replicas int
		timeout  time.Duration
	}{
		{"addrs: ['a:1']", 0, DefaultRedisWaitTimeout},
		{"addrs: ['s1:26379', 's2:26379']\n    master_name: m", 1, DefaultRedisWaitTimeout},
		{"addrs: ['a:1', 'b:2', 'c:3']", 1, DefaultRedisWaitTimeout},
		{"addrs: ['a:1']\n    cluster: true", 1, DefaultRedisWaitTimeout},
		{"addrs: ['a:1', 'b:2']\n    wait_replicas: 0", 0, DefaultRedisWaitTimeout},
		{"addrs: ['a:1']\n    wait_replicas: 2\n    wait_timeout: 250ms", 2, 250 * time.Millisecond},
	} {
		c := mustParse(t, doc(map[string]string{"store": "store:\n  type: redis\n  redis:\n    " + tt.redis}), noEnv)
		r := c.Store.Redis
		if r.WaitReplicas != tt.replicas || r.WaitTimeout != tt.timeout {
			t.Errorf("%q: wait_replicas %d, wait_timeout %v; want %d, %v", tt.redis, r.WaitReplicas, r.WaitTimeout, tt.replicas, tt.timeout)
		}
	}
}

// TestRedisWaitRules: the bounds of wait_replicas and wait_timeout.
func TestRedisWaitRules(t *testing.T) {
	for _, tt := range []struct{ redis, path, msg string }{
		{"addrs: ['a:1']\n    wait_replicas: -1", "store.redis.wait_replicas", "must not be negative"},
		{"addrs: ['a:1']\n    wait_timeout: 0s", "store.redis.wait_timeout", "at least 1ms"},
		{"addrs: ['a:1', 'b:2']\n    timeout: 1s\n    wait_timeout: 1s", "store.redis.wait_timeout", "shorter than store.redis.timeout"},
	} {
		ps := problemsOf(t, doc(map[string]string{"store": "store:\n  type: redis\n  redis:\n    " + tt.redis}), noEnv)
		found := false
		for _, p := range ps {
			if p.Path == tt.path && strings.Contains(p.Message, tt.msg) {
				found = true
			}
		}
		if !found {
			t.Errorf("%q: problems %v, want %s: %s", tt.redis, ps, tt.path, tt.msg)
		}
	}
}

// TestDeployHAConfigs: the Sentinel and Cluster examples under deploy/
// load, and name the topology and the wait they document.
func TestDeployHAConfigs(t *testing.T) {
	setEnv(t, map[string]string{
		"CIBAPROXY_ISSUER":         "https://ciba.example.com",
		"CIBAPROXY_ENCRYPTION_KEY": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
	})
	for _, tt := range []struct{ file, master string }{
		{"cibaproxy-sentinel.yaml", "cibaproxy"},
		{"cibaproxy-cluster.yaml", ""},
	} {
		c, err := Load(filepath.Join(deployDir, tt.file))
		if err != nil {
			t.Fatalf("deploy/%s: %v", tt.file, err)
		}
		r := c.Store.Redis
		check(t, tt.file+" store.redis.master_name", r.MasterName, tt.master)
		check(t, tt.file+" store.redis.addrs", len(r.Addrs), 3)
		check(t, tt.file+" store.redis.wait_replicas", r.WaitReplicas, 1)
	}
}
