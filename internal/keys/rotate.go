package keys

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gojose "github.com/go-jose/go-jose/v4"

	"github.com/cibaproxy/cibaproxy/internal/fault"
	"github.com/cibaproxy/cibaproxy/internal/jose"
)

// Rotation of the generated keys without downtime.
//
// The keys live in the store as generations of a key set: generation 0 is
// the single key of RecordKey (the key of the first start, as earlier
// versions stored it), generation n ≥ 1 is the record RecordSetPrefix+n,
// written once by Rotate and never changed (PutRecord refuses to overwrite,
// so two rotations at the same time cannot both win). Every instance reads
// the newest generation at start and checks for a newer one on a timer
// (Live.Run), or at once when told (Live.Reload).
//
// A rotation adds a new key that is published at once and starts signing
// only after PublishAhead, by which time every instance has read it and
// every client's cached JWKS (max-age 300 s at jwks_uri) has expired: a
// client never sees a token whose kid it cannot find. The keys it replaces
// stop signing at that moment and stay published for Retain more, until
// every token they signed has expired; later rotations drop them from the
// set.

// RecordSetPrefix is the prefix of the key of the key set generations
// (kind RecordKind): "signing-keys.1", "signing-keys.2", ….
const RecordSetPrefix = "signing-keys."

// Times of a rotation.
const (
	// MinPublishAhead is the shortest PublishAhead: the JWKS max-age
	// served at jwks_uri (300 s) plus the reload period of the instances
	// (ReloadEvery), so that no client holds a JWKS without the new key
	// when it starts signing.
	MinPublishAhead = 300*time.Second + ReloadEvery
	// DefaultPublishAhead is the PublishAhead of `keys rotate`.
	DefaultPublishAhead = 10 * time.Minute
	// ReloadEvery is how often a running instance reads the key set.
	ReloadEvery = 30 * time.Second
	// RetainSlack is added to the longest token lifetime to get Retain:
	// clock skew between instances and clients.
	RetainSlack = 5 * time.Minute
)

// Entry is one key of a key set generation.
type Entry struct {
	// Key is the private JWK.
	Key gojose.JSONWebKey `json:"jwk"`
	// NotBefore is when the key starts signing; zero for the first key.
	// Of the keys whose NotBefore has passed, the latest signs.
	NotBefore time.Time `json:"not_before,omitzero"`
	// Until is when the key leaves the published set; zero for a key in
	// use. A key stops signing when a later one starts, and stays
	// published until every token it signed has expired.
	Until time.Time `json:"until,omitzero"`
}

// set is one generation of the key set.
type set struct {
	Keys []Entry `json:"keys"`
}

// RotatePolicy says how a rotation is timed.
type RotatePolicy struct {
	// PublishAhead is how long the new key is published before it signs;
	// at least MinPublishAhead.
	PublishAhead time.Duration
	// Retain is how long a replaced key stays published after it stopped
	// signing: at least the longest lifetime of a token it signed (ID and
	// access tokens; refresh tokens are opaque). See RetainFor.
	Retain time.Duration
	// Alg is the algorithm of the new key: RS256 (RSA 2048) when empty,
	// PS256 (RSA 2048) or ES256 (P-256); see Algs.Generate.
	Alg string
}

// RetainFor returns the Retain of tokens living at most the longest of
// ttls, plus RetainSlack.
func RetainFor(ttls ...time.Duration) time.Duration {
	var longest time.Duration
	for _, d := range ttls {
		longest = max(longest, d)
	}
	return longest + RetainSlack
}

// KeyInfo describes one key of a rotation, without key material.
type KeyInfo struct {
	// KeyID is the kid of the key at jwks_uri.
	KeyID string `json:"kid"`
	// Alg is the algorithm it signs with.
	Alg string `json:"alg"`
	// NotBefore is when it starts (or started) signing; zero for the first
	// key.
	NotBefore time.Time `json:"not_before,omitzero"`
	// Until is when it leaves jwks_uri; zero for none planned.
	Until time.Time `json:"until,omitzero"`
}

// Rotation is what Rotate did.
type Rotation struct {
	// Generation is the number of the key set generation written.
	Generation int `json:"generation"`
	// New is the new key: published now, signing from New.NotBefore.
	New KeyInfo `json:"new"`
	// Keys is the whole new key set, the new key first.
	Keys []KeyInfo `json:"keys"`
}

// ErrNotRotatable is returned by Rotate and Live.Rotate when the keys are
// not generated ones kept in the store.
var ErrNotRotatable = errors.New("keys: the signing keys come from tokens.signing_key_file: rotate that file (the first key signs, the others are published) and restart")

// ErrRotationRace is returned by Rotate when another rotation wrote the
// same generation first.
var ErrRotationRace = errors.New("keys: another rotation was written at the same time; check the key set and rotate again if needed")

// Rotate adds a new key for p.Alg to the key set in st, published at once
// and signing from now+p.PublishAhead; the keys signing until then stay
// published p.Retain longer. Keys whose time has passed are dropped.
// Running instances pick the change up on their next reload.
func Rotate(ctx context.Context, st Records, p RotatePolicy, now time.Time) (*Rotation, error) {
	if p.PublishAhead < MinPublishAhead {
		return nil, fmt.Errorf("keys: a new key must be published at least %v before it signs (JWKS caches), not %v", MinPublishAhead, p.PublishAhead)
	}
	if p.Retain <= 0 {
		return nil, errors.New("keys: Retain must be positive")
	}
	gen, cur, err := latest(ctx, st, 0, nil)
	if err != nil {
		return nil, err
	}
	if cur == nil {
		return nil, fmt.Errorf("keys: no signing key in the store yet: start the server once first")
	}
	k, err := generate(p.Alg)
	if err != nil {
		return nil, err
	}
	start := now.Add(p.PublishAhead).Truncate(time.Second)
	next := set{Keys: []Entry{{Key: k, NotBefore: start}}}
	for _, e := range cur.Keys {
		if !e.Until.IsZero() && !now.Before(e.Until) {
			continue // gone already
		}
		if !e.NotBefore.Before(start) {
			continue // a pending key that would sign after the new one: never used
		}
		if e.Until.IsZero() || e.Until.After(start.Add(p.Retain)) {
			e.Until = start.Add(p.Retain)
		}
		next.Keys = append(next.Keys, e)
	}
	b, err := json.Marshal(next)
	if err != nil {
		return nil, fmt.Errorf("keys: encode key set: %w", err)
	}
	switch err := st.PutRecord(ctx, RecordKind, RecordSetPrefix+strconv.Itoa(gen+1), b, 0); {
	case errors.Is(err, fault.ErrExists):
		return nil, ErrRotationRace
	case err != nil:
		return nil, fmt.Errorf("keys: store key set generation %d: %w", gen+1, err)
	}
	m, err := fromEntries(next.Keys)
	if err != nil {
		return nil, err
	}
	r := &Rotation{Generation: gen + 1, Keys: make([]KeyInfo, len(next.Keys))}
	for i, e := range next.Keys {
		r.Keys[i] = KeyInfo{KeyID: m.keys[i].KeyID, Alg: m.keys[i].Algorithm, NotBefore: e.NotBefore, Until: e.Until}
	}
	r.New = r.Keys[0]
	return r, nil
}

// latest returns the newest key set generation in st after generation
// from (whose set is cur), reading generation 0 when cur is nil. It
// returns a nil set when the store holds no key.
func latest(ctx context.Context, st Records, from int, cur *set) (int, *set, error) {
	if cur == nil {
		b, err := st.GetRecord(ctx, RecordKind, RecordKey)
		if errors.Is(err, fault.ErrNotFound) {
			return 0, nil, nil
		}
		if err != nil {
			return 0, nil, fmt.Errorf("keys: signing key in the store: %w", err)
		}
		var k gojose.JSONWebKey
		if err := json.Unmarshal(b, &k); err != nil {
			return 0, nil, fmt.Errorf("keys: signing key in the store: %w", err)
		}
		from, cur = 0, &set{Keys: []Entry{{Key: k}}}
	}
	for {
		b, err := st.GetRecord(ctx, RecordKind, RecordSetPrefix+strconv.Itoa(from+1))
		if errors.Is(err, fault.ErrNotFound) {
			return from, cur, nil
		}
		if err != nil {
			return 0, nil, fmt.Errorf("keys: key set generation %d: %w", from+1, err)
		}
		var s set
		if err := json.Unmarshal(b, &s); err != nil {
			return 0, nil, fmt.Errorf("keys: key set generation %d: %w", from+1, err)
		}
		if len(s.Keys) == 0 {
			return 0, nil, fmt.Errorf("keys: key set generation %d is empty", from+1)
		}
		from, cur = from+1, &s
	}
}

// fromEntries is fromJWKs over the keys of entries, in their order.
func fromEntries(es []Entry) (*Manager, error) {
	jwks := make([]gojose.JSONWebKey, len(es))
	for i, e := range es {
		jwks[i] = e.Key
	}
	return fromJWKs(jwks, Algs{})
}

// checkSet returns an error when a key of s that signs now or will sign
// (one not retiring: no Until) may not sign under algs. Retiring keys
// are only published, to verify what they signed.
func checkSet(s *set, algs Algs) error {
	if len(algs.Allowed) == 0 {
		return nil
	}
	m, err := fromEntries(s.Keys)
	if err != nil {
		return err
	}
	for i, e := range s.Keys {
		if e.Until.IsZero() {
			if err := algs.check(m.keys[i].KeyID, m.keys[i].Algorithm); err != nil {
				return err
			}
		}
	}
	return nil
}

// Live is the issuer's keys as they are at each moment: the key that signs
// and the keys published change as rotations are read from the store and
// as their times pass. It signs for the local upstream and serves
// jwks_uri. A Live is safe for concurrent use.
type Live struct {
	store Records // nil: the keys of a file, which never change
	now   func() time.Time
	algs  Algs

	mu  sync.Mutex // serializes reloads
	gen int
	set *set

	view atomic.Pointer[view]
}

// view is the Manager in force until a time.
type view struct {
	m     *Manager
	algs  []string  // the algorithm of m's signing key, then those of the keys to sign later
	until time.Time // zero: until the key set changes
}

// Open returns the issuer's keys: those of file (which never change; see
// LoadOrCreate), or else the key set kept in store, creating the first key
// (for algs.Generate) if there is none. now is the clock (time.Now when
// nil). With algs.Allowed set, Open refuses a file whose first key, or a
// key set whose signing key that is not retiring, signs with another
// algorithm: the error tells the operator what to do. A key set whose key
// in force is retiring in favour of an allowed one is accepted; Algs then
// lists both algorithms until the switch.
func Open(ctx context.Context, store Records, file string, now func() time.Time, algs Algs) (*Live, error) {
	if now == nil {
		now = time.Now
	}
	l := &Live{now: now, algs: algs}
	if file != "" {
		m, err := loadOrCreate(ctx, nil, file, algs)
		if err != nil {
			return nil, err
		}
		if err := algs.check(m.KeyID(), m.Alg()); err != nil {
			return nil, fmt.Errorf("%w: put a key that signs %s first in %s (an RSA key without alg signs %s)",
				err, strings.Join(algs.Allowed, " or "), file, algs.rsaDefault())
		}
		l.view.Store(&view{m: m, algs: []string{m.Alg()}})
		return l, nil
	}
	if store == nil {
		return nil, errors.New("keys: neither a key file nor a store")
	}
	if _, err := loadOrCreate(ctx, store, "", algs); err != nil { // generation 0
		return nil, err
	}
	l.store = store
	if err := l.Reload(ctx); err != nil {
		if ae := (*algError)(nil); errors.As(err, &ae) {
			return nil, fmt.Errorf("%w: run `cibaproxy keys rotate --config FILE` with this configuration (on the embedded store, with the server stopped) to add a %s key, then start the server: the key in force signs until the new one takes over at the time the command prints",
				err, algs.Generate)
		}
		return nil, err
	}
	return l, nil
}

// Rotatable reports whether the keys are generated ones kept in the store.
func (l *Live) Rotatable() bool { return l.store != nil }

// Reload reads the newest key set generation from the store. Errors leave
// the keys in force unchanged.
func (l *Live) Reload(ctx context.Context) error {
	if l.store == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	gen, s, err := latest(ctx, l.store, l.gen, l.set)
	if err != nil {
		return err
	}
	if s == nil {
		return errors.New("keys: the signing key is gone from the store")
	}
	if s == l.set {
		return nil
	}
	if err := checkSet(s, l.algs); err != nil {
		return fmt.Errorf("key set generation %d: %w", gen, err)
	}
	v, err := viewAt(s, l.now())
	if err != nil {
		return fmt.Errorf("keys: key set generation %d: %w", gen, err)
	}
	l.gen, l.set = gen, s
	l.view.Store(v)
	return nil
}

// Run reloads the key set every period until ctx ends, passing errors to
// onError (which may be nil).
func (l *Live) Run(ctx context.Context, period time.Duration, onError func(error)) {
	if l.store == nil {
		return
	}
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := l.Reload(ctx); err != nil && onError != nil && ctx.Err() == nil {
				onError(err)
			}
		}
	}
}

// Rotate rotates the key set in the store (see the package function) and
// reads the result at once.
func (l *Live) Rotate(ctx context.Context, p RotatePolicy) (*Rotation, error) {
	if l.store == nil {
		return nil, ErrNotRotatable
	}
	if p.Alg == "" {
		p.Alg = l.algs.Generate
	}
	if alg := cmp.Or(p.Alg, string(gojose.RS256)); len(l.algs.Allowed) > 0 && !slices.Contains(l.algs.Allowed, alg) {
		return nil, fmt.Errorf("keys: a new key would sign %s, but only %s may sign here", alg, strings.Join(l.algs.Allowed, " or "))
	}
	r, err := Rotate(ctx, l.store, p, l.now())
	if err != nil {
		return nil, err
	}
	if err := l.Reload(ctx); err != nil {
		return r, fmt.Errorf("keys: rotated, but reading the new key set failed (the next reload retries): %w", err)
	}
	return r, nil
}

// current returns the Manager in force now.
func (l *Live) current() *Manager { return l.currentView().m }

// currentView returns the view in force now.
func (l *Live) currentView() *view {
	v := l.view.Load()
	if v.until.IsZero() || l.now().Before(v.until) {
		return v
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if v = l.view.Load(); v.until.IsZero() || l.now().Before(v.until) {
		return v
	}
	nv, err := viewAt(l.set, l.now())
	if err != nil {
		return v // unreachable: the set was checked when read
	}
	l.view.Store(nv)
	return nv
}

// viewAt returns the Manager of s at now: the key with the latest passed
// NotBefore signs; the keys whose Until has not passed are published.
func viewAt(s *set, now time.Time) (*view, error) {
	signer := -1
	var until time.Time
	soonest := func(t time.Time) {
		if t.After(now) && (until.IsZero() || t.Before(until)) {
			until = t
		}
	}
	var published []Entry
	for _, e := range s.Keys {
		soonest(e.NotBefore)
		soonest(e.Until)
		if !e.Until.IsZero() && !now.Before(e.Until) {
			continue
		}
		published = append(published, e)
		if !now.Before(e.NotBefore) && (signer < 0 || e.NotBefore.After(published[signer].NotBefore)) {
			signer = len(published) - 1
		}
	}
	if signer < 0 {
		// No key has started yet (a clock far behind): the earliest signs.
		if len(published) == 0 {
			return nil, errors.New("no key is published")
		}
		signer = 0
		for i, e := range published {
			if e.NotBefore.Before(published[signer].NotBefore) {
				signer = i
			}
		}
	}
	ordered := append([]Entry{published[signer]}, published[:signer]...)
	ordered = append(ordered, published[signer+1:]...)
	m, err := fromEntries(ordered)
	if err != nil {
		return nil, err
	}
	algs := []string{m.Alg()}
	for i, e := range ordered[1:] {
		if alg := m.keys[i+1].Algorithm; e.NotBefore.After(now) && !slices.Contains(algs, alg) {
			algs = append(algs, alg)
		}
	}
	return &view{m: m, algs: algs, until: until}, nil
}

// Sign signs with the key in force (see Manager.Sign).
func (l *Live) Sign(claims any, typ string) (string, error) { return l.current().Sign(claims, typ) }

// Alg is the algorithm of the key in force. Generated keys all sign with
// a SHA-256 algorithm (RS256, PS256, ES256), so a rotation between Alg and
// Sign does not change the at_hash that Alg selects (LeftHash).
func (l *Live) Alg() string { return l.current().Alg() }

// Algs are the algorithms tokens are signed with: that of the key in
// force, then those of the published keys that will sign later (a
// rotation to another algorithm). This is what discovery lists as
// id_token_signing_alg_values_supported.
func (l *Live) Algs() []string { return slices.Clone(l.currentView().algs) }

// KeyID is the kid of the key in force.
func (l *Live) KeyID() string { return l.current().KeyID() }

// PublicJWKS returns the keys published now, as served at jwks_uri.
func (l *Live) PublicJWKS() gojose.JSONWebKeySet { return l.current().PublicJWKS() }

// KeySet verifies tokens signed by any key published at the time of the
// call.
func (l *Live) KeySet() jose.KeySet { return liveKeySet{l} }

type liveKeySet struct{ l *Live }

func (k liveKeySet) Verify(ctx context.Context, jws string) ([]byte, error) {
	return k.l.current().KeySet().Verify(ctx, jws)
}
