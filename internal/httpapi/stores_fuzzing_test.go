//go:build fuzzing

package httpapi

// redisBackends is empty in the build scripts/fuzz.sh makes (-tags
// fuzzing): see stores_redis_test.go.
func redisBackends() []storeBackend { return nil }
