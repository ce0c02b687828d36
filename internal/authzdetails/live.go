package authzdetails

import "sync/atomic"

// Set is one configuration of the types: their compiled schemas and bounds
// (Registry) and their approval-page templates (Templates), either nil.
// A Set is never changed once in force; a reload puts in force another.
type Set struct {
	// Registry holds the types and their schemas; nil supports none.
	Registry *Registry
	// Templates holds the types' templates; nil has none.
	Templates *Templates
}

// Live is the Set in force, replaced whole by Store (a configuration
// reload): a caller that takes the Registry or the Templates once sees one
// configuration, never a mix of two. A nil *Live holds an empty Set. It is
// safe for concurrent use.
type Live struct {
	set atomic.Pointer[Set]
}

// NewLive returns a Live holding s.
func NewLive(s Set) *Live {
	l := &Live{}
	l.Store(s)
	return l
}

// Load returns the Set in force.
func (l *Live) Load() Set {
	if l == nil {
		return Set{}
	}
	if s := l.set.Load(); s != nil {
		return *s
	}
	return Set{}
}

// Store puts s in force, the registry and the templates at once.
func (l *Live) Store(s Set) {
	l.set.Store(&s)
}

// Registry returns the registry in force, nil when no type is configured.
func (l *Live) Registry() *Registry { return l.Load().Registry }

// Templates returns the templates in force, nil when none is configured.
func (l *Live) Templates() *Templates { return l.Load().Templates }
