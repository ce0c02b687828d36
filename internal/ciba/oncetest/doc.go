// Package oncetest holds the tests that every message of ciba's dispatcher
// (the user's notice, a client's ping or push) goes out exactly once, with
// one or several instances on a memory or a Redis store. It has no code of
// its own.
//
// They live apart from package ciba's own tests so that ciba's test binary,
// and its build with the fuzzing instrumentation (scripts/fuzz.sh), need
// neither the Redis store nor go-redis.
package oncetest
