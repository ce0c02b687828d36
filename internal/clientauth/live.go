package clientauth

import "sync/atomic"

// Source gives the Registry to use for one request. A *Registry is its own
// Source; a *Live hands out the current one of a registry that is replaced
// when the configuration is reloaded. Callers take Current once per
// request, so one request sees one set of clients throughout.
type Source interface {
	// Current returns the registry in force; never nil.
	Current() *Registry
}

// Current returns r itself: a Registry that never changes.
func (r *Registry) Current() *Registry { return r }

// Live holds the registry in force and replaces it atomically, so the
// clients can be reloaded without a restart: requests under way finish
// with the registry they started with, the next ones get the new one. A
// Live is safe for concurrent use.
type Live struct{ p atomic.Pointer[Registry] }

// NewLive returns a Live holding r, which must not be nil.
func NewLive(r *Registry) *Live {
	l := &Live{}
	l.p.Store(r)
	return l
}

// Current returns the registry in force.
func (l *Live) Current() *Registry { return l.p.Load() }

// Swap puts r in force and returns the registry it replaces. r must not be
// nil; set its AssertionPolicy before the call.
func (l *Live) Swap(r *Registry) (old *Registry) { return l.p.Swap(r) }

// Lookup returns the registration of client id in the registry in force.
func (l *Live) Lookup(id string) (*Registration, bool) { return l.Current().Lookup(id) }

// IDs returns the client_ids of the registry in force, sorted.
func (l *Live) IDs() []string { return l.Current().IDs() }
