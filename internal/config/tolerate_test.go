package config

import (
	"errors"
	"strings"
	"testing"
)

// TestTolerateUnset: with TolerateUnset, an unset ${VAR} in a value the
// caller does not need (a client secret) is left empty instead of failing
// the load; one in a needed value fails, naming the variable, even where
// an empty value would be allowed (the redis password); without the
// option, the unset secret fails as before.
func TestTolerateUnset(t *testing.T) {
	secret := clients("client_id: c1\nclient_secret: ${UNSET_SECRET}\nbackchannel_token_delivery_mode: poll")
	data := doc(map[string]string{"clients": secret})

	c, err := parse([]byte(data), "test.yaml", noEnv, TolerateUnset("store"))
	if err != nil {
		t.Fatalf("tolerant: %v", err)
	}
	if len(c.Clients) != 1 || c.Clients[0].ID != "c1" || c.Clients[0].Secret != "" {
		t.Errorf("tolerant: clients %+v, want c1 with an empty secret", c.Clients)
	}

	ps := problemsOf(t, data, noEnv)
	if len(ps) != 1 || ps[0].Path != "clients[0].client_secret" || !strings.Contains(ps[0].Message, "${UNSET_SECRET}, which is not set") {
		t.Errorf("strict: %v, want the unset client secret", ps)
	}

	redis := doc(map[string]string{"clients": secret,
		"store": "store:\n  type: redis\n  redis:\n    addrs: [127.0.0.1:6379]\n    password: ${UNSET_REDIS_PASSWORD}"})
	_, err = parse([]byte(redis), "test.yaml", noEnv, TolerateUnset("store"))
	if !errors.As(err, &ps) || len(ps) != 1 || ps[0].Path != "store.redis.password" ||
		!strings.Contains(ps[0].Message, "required (from ${UNSET_REDIS_PASSWORD}, which is not set) by this command") {
		t.Errorf("tolerant, needed password unset: %v", err)
	}
	if _, err := parse([]byte(redis), "test.yaml", envMap(map[string]string{"UNSET_REDIS_PASSWORD": "pw"}), TolerateUnset("store")); err != nil {
		t.Errorf("tolerant, password set: %v", err)
	}

	// "[]" in a needed path is any index: the client_id is needed.
	ids := doc(map[string]string{"clients": clients("client_id: ${UNSET_ID}\nclient_secret: s\nbackchannel_token_delivery_mode: poll")})
	_, err = parse([]byte(ids), "test.yaml", noEnv, TolerateUnset("clients[].client_id"))
	if !errors.As(err, &ps) || len(ps) == 0 || ps[0].Path != "clients[0].client_id" || !strings.Contains(ps[0].Message, "${UNSET_ID}") {
		t.Errorf("tolerant, needed client_id unset: %v", err)
	}

	// A problem that has nothing to do with an unset variable stays.
	bad := doc(map[string]string{"clients": clients("client_id: c1\nclient_secret: ${UNSET_SECRET}\nbackchannel_token_delivery_mode: poll"),
		"store": "store:\n  type: nosuch"})
	_, err = parse([]byte(bad), "test.yaml", noEnv, TolerateUnset())
	if !errors.As(err, &ps) || len(ps) != 1 || ps[0].Path != "store.type" {
		t.Errorf("tolerant, bad store.type: %v", err)
	}
}
