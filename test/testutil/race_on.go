//go:build race

package testutil

// RaceEnabled reports whether the tests run with the race detector.
const RaceEnabled = true
