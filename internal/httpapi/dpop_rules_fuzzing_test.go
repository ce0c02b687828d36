//go:build fuzzing

package httpapi

// redisDPoPBackends is empty in the build scripts/fuzz.sh makes (-tags
// fuzzing): see dpop_rules_redis_test.go.
func redisDPoPBackends() []dpopBackend { return nil }
