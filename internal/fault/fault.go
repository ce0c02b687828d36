// Package fault holds the kinds of failure that packages on every layer
// share: a record not found, a record that already exists, a dependency
// (store or IdP) that cannot be reached. A leaf such as internal/keys or
// internal/upstream/idp reports or recognises them without importing the
// domain; ciba re-exports them (ciba.ErrNotFound is fault.ErrNotFound), as
// os re-exports the errors of io/fs. The wire codes they become
// (temporarily_unavailable, invalid_grant, ...) are chosen where the domain
// meets HTTP, not here.
package fault

import "errors"

// The shared failures. Producers wrap them with context; callers test with
// errors.Is.
var (
	// ErrNotFound: no record with that key (never existed, or collected).
	ErrNotFound = errors.New("not found")
	// ErrExists: a create found a record with the same key.
	ErrExists = errors.New("already exists")
	// ErrUnavailable: a backend or IdP cannot be reached; the caller
	// answers temporarily_unavailable and changes nothing.
	ErrUnavailable = errors.New("store unavailable")
)
