package ciba

import "sync"

// The in-flight set: within one instance, a delivery is attempted by one
// worker at a time (Dispatcher.attempt); across instances the lease in the
// store does it (dispatch.go).

// deliveryKind is which of a request's two deliveries is meant: the
// channel's message to the user or the notice to the client.
type deliveryKind int

const (
	userNotice deliveryKind = iota
	clientNotice
)

// of returns r's delivery of kind k.
func (k deliveryKind) of(r *AuthRequest) *Delivery {
	if k == userNotice {
		return &r.UserNotice
	}
	return &r.ClientNotice
}

// String names the kind in logs.
func (k deliveryKind) String() string {
	if k == userNotice {
		return "channel"
	}
	return "client notification"
}

// inflightKey names one delivery of one request.
type inflightKey struct {
	id string
	k  deliveryKind
}

// inflight is the set of deliveries an instance is attempting.
type inflight struct {
	mu sync.Mutex
	m  map[inflightKey]struct{}
}

// start adds the delivery and reports whether it was not there already.
func (f *inflight) start(id string, k deliveryKind) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.m[inflightKey{id, k}]; ok {
		return false
	}
	f.m[inflightKey{id, k}] = struct{}{}
	return true
}

// end removes the delivery.
func (f *inflight) end(id string, k deliveryKind) {
	f.mu.Lock()
	delete(f.m, inflightKey{id, k})
	f.mu.Unlock()
}
