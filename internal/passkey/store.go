// Package passkey lets the users of the local upstream approve requests
// with a passkey (WebAuthn): their credentials, kept in the store; the
// one-time enrolment links that register them; the registration and
// assertion ceremonies (on github.com/go-webauthn/webauthn), with an
// assertion challenge bound to the one request it approves; and the signed
// approval record kept with the decision.
package passkey

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// Record kinds in the store.
const (
	// kindCredentials maps a user's subject to the JSON list of their
	// credentials, changed by SwapRecord only.
	kindCredentials = "passkeys"
	// kindEnrolment maps an enrolment token's hash to its Enrolment, with
	// the link's lifetime; TakeRecord makes it single use.
	kindEnrolment = "passkey-enrolment"
)

// EnrolPath is the path of the enrolment page; the link's token follows
// it.
const EnrolPath = "/passkeys/enroll/"

// MaxCredentials is how many passkeys one user may have.
const MaxCredentials = 10

// swapTries bounds the compare-and-set loop of a change of a user's list
// against concurrent changes.
const swapTries = 16

// Errors of the package.
var (
	// ErrNotFound: no such credential, or no such (or an expired, or a
	// used) enrolment link.
	ErrNotFound = errors.New("passkey: not found")
	// ErrTooMany: the user has MaxCredentials passkeys already.
	ErrTooMany = errors.New("passkey: the user has the most passkeys allowed")
	// ErrConflict: the list kept changing under a change (swapTries).
	ErrConflict = errors.New("passkey: the credentials changed concurrently; try again")
)

// Records is what the package keeps in the store (ciba.Store's records).
type Records interface {
	PutRecord(ctx context.Context, kind, key string, value []byte, ttl time.Duration) error
	GetRecord(ctx context.Context, kind, key string) ([]byte, error)
	TakeRecord(ctx context.Context, kind, key string) ([]byte, error)
	SwapRecord(ctx context.Context, kind, key string, old, new []byte) (bool, error)
}

// Credential is one passkey of a user.
type Credential struct {
	// WebAuthn is the credential record of the library: id, public key,
	// sign count, flags. Its public key is not a secret.
	WebAuthn webauthn.Credential `json:"webauthn"`
	// Created is when it was registered.
	Created time.Time `json:"created"`
	// LastUsed is when it last approved a request.
	LastUsed time.Time `json:"last_used,omitzero"`
}

// ID is the credential id as shown to operators (base64url).
func (c *Credential) ID() string { return base64.RawURLEncoding.EncodeToString(c.WebAuthn.ID) }

// Credentials keeps users' passkeys in the store, one record per user
// (keyed by subject), so that a user's list changes by compare-and-set:
// two approvals at once cannot lose a sign count, nor an enrolment a
// removal.
type Credentials struct {
	Records Records
}

// List returns the passkeys of the user with the given subject (none: an
// empty list).
func (s *Credentials) List(ctx context.Context, subject string) ([]Credential, error) {
	list, _, err := s.read(ctx, subject)
	return list, err
}

func (s *Credentials) read(ctx context.Context, subject string) ([]Credential, []byte, error) {
	raw, err := s.Records.GetRecord(ctx, kindCredentials, subject)
	if errors.Is(err, ciba.ErrNotFound) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("passkey: read the credentials: %w", err)
	}
	var list []Credential
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, nil, fmt.Errorf("passkey: decode the credentials: %w", err)
	}
	return list, raw, nil
}

// change applies fn to the user's list and stores the result by
// compare-and-set, trying again when the list changed meanwhile. An
// empty result deletes the record.
func (s *Credentials) change(ctx context.Context, subject string, fn func([]Credential) ([]Credential, error)) error {
	for range swapTries {
		list, raw, err := s.read(ctx, subject)
		if err != nil {
			return err
		}
		list, err = fn(list)
		if err != nil {
			return err
		}
		var next []byte
		if len(list) > 0 {
			if next, err = json.Marshal(list); err != nil {
				return fmt.Errorf("passkey: encode the credentials: %w", err)
			}
		}
		if raw == nil && next == nil {
			return nil
		}
		ok, err := s.Records.SwapRecord(ctx, kindCredentials, subject, raw, next)
		if err != nil {
			return fmt.Errorf("passkey: write the credentials: %w", err)
		}
		if ok {
			return nil
		}
	}
	return ErrConflict
}

// Add stores a new passkey for the user; ErrTooMany past MaxCredentials.
// A credential id the user has already is replaced.
func (s *Credentials) Add(ctx context.Context, subject string, c Credential) error {
	return s.change(ctx, subject, func(list []Credential) ([]Credential, error) {
		list = deleteID(list, c.WebAuthn.ID)
		if len(list) >= MaxCredentials {
			return nil, ErrTooMany
		}
		return append(list, c), nil
	})
}

// Remove deletes the user's passkey whose id (base64url, as Credential.ID
// shows it) starts with prefix, at least 8 characters of it; ErrNotFound
// if none or more than one does.
func (s *Credentials) Remove(ctx context.Context, subject, prefix string) (removed string, err error) {
	if len(prefix) < 8 {
		return "", fmt.Errorf("%w: give at least 8 characters of the credential id", ErrNotFound)
	}
	err = s.change(ctx, subject, func(list []Credential) ([]Credential, error) {
		var match []byte
		for i := range list {
			if strings.HasPrefix(list[i].ID(), prefix) {
				if match != nil {
					return nil, fmt.Errorf("%w: %q names more than one passkey; give more of the id", ErrNotFound, prefix)
				}
				match = list[i].WebAuthn.ID
				removed = list[i].ID()
			}
		}
		if match == nil {
			return nil, fmt.Errorf("%w: the user has no passkey %q", ErrNotFound, prefix)
		}
		return deleteID(list, match), nil
	})
	return removed, err
}

// Used records an assertion of credential c (its new sign count and
// flags, from the library) at time at. A credential removed meanwhile is
// ErrNotFound: the assertion must not count.
func (s *Credentials) Used(ctx context.Context, subject string, c *webauthn.Credential, at time.Time) error {
	return s.change(ctx, subject, func(list []Credential) ([]Credential, error) {
		for i := range list {
			if bytes.Equal(list[i].WebAuthn.ID, c.ID) {
				list[i].WebAuthn.Authenticator.SignCount = c.Authenticator.SignCount
				list[i].WebAuthn.Flags = c.Flags
				list[i].LastUsed = at.UTC()
				return list, nil
			}
		}
		return nil, fmt.Errorf("%w: the passkey was removed", ErrNotFound)
	})
}

func deleteID(list []Credential, id []byte) []Credential {
	out := list[:0]
	for _, c := range list {
		if !bytes.Equal(c.WebAuthn.ID, id) {
			out = append(out, c)
		}
	}
	return out
}

// Enrolment is what an enrolment link stands for: the user who may add a
// passkey through it, until Expires.
type Enrolment struct {
	Subject  string    `json:"sub"`
	Username string    `json:"username"`
	Expires  time.Time `json:"exp"`
	// Binding, when set, ties a self-service enrolment (one a user is
	// offered after a password approval) to the page and browser that
	// were offered it: a digest the caller computes (IssueBound), which
	// the answer must reproduce. A bound enrolment is no link: the
	// enrolment page of `cibaproxy users enroll` refuses it. Empty for
	// links.
	Binding string `json:"binding,omitempty"`
}

// Enrolments issues and redeems one-time enrolment links. The store holds
// a hash of each token, never the token, with the link's lifetime; taking
// it is TakeRecord, so of two uses at once exactly one succeeds, on every
// backend (Redis included).
type Enrolments struct {
	Records Records
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

func (e *Enrolments) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

// Issue returns a new token for the user, valid for ttl: an enrolment
// link's.
func (e *Enrolments) Issue(ctx context.Context, subject, username string, ttl time.Duration) (token string, en Enrolment, err error) {
	return e.IssueBound(ctx, subject, username, "", ttl)
}

// IssueBound returns a new token for the user, valid for ttl, whose
// enrolment carries binding (Enrolment.Binding; "" for a link). It is
// single use and stored like a link's.
func (e *Enrolments) IssueBound(ctx context.Context, subject, username, binding string, ttl time.Duration) (token string, en Enrolment, err error) {
	if ttl <= 0 {
		return "", en, fmt.Errorf("passkey: enrolment lifetime %v is not positive", ttl)
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	token = base64.RawURLEncoding.EncodeToString(b)
	en = Enrolment{Subject: subject, Username: username, Expires: e.now().Add(ttl).UTC().Truncate(time.Second), Binding: binding}
	v, err := json.Marshal(en)
	if err != nil {
		return "", en, fmt.Errorf("passkey: encode the enrolment: %w", err)
	}
	if err := e.Records.PutRecord(ctx, kindEnrolment, tokenKey(token), v, ttl); err != nil {
		return "", en, fmt.Errorf("passkey: store the enrolment: %w", err)
	}
	return token, en, nil
}

// Peek returns the enrolment of a token without using it; ErrNotFound for
// an unknown, expired or used token.
func (e *Enrolments) Peek(ctx context.Context, token string) (Enrolment, error) {
	v, err := e.Records.GetRecord(ctx, kindEnrolment, tokenKey(token))
	return e.decode(v, err)
}

// Take uses the token up: of concurrent callers exactly one gets the
// enrolment, the others ErrNotFound.
func (e *Enrolments) Take(ctx context.Context, token string) (Enrolment, error) {
	v, err := e.Records.TakeRecord(ctx, kindEnrolment, tokenKey(token))
	return e.decode(v, err)
}

// Redeem uses the token up for use: it takes the enrolment (of concurrent
// callers exactly one gets it, the others ErrNotFound), calls use with it,
// and, when use fails (the credentials' write: a store error, ErrTooMany),
// puts it back for the rest of its lifetime (ciba.UseTaken says why this
// order keeps one passkey per token), so that the same token can be tried
// again.
func (e *Enrolments) Redeem(ctx context.Context, token string, use func(Enrolment) error) (Enrolment, error) {
	v, err := e.Records.TakeRecord(ctx, kindEnrolment, tokenKey(token))
	en, err := e.decode(v, err)
	if err != nil {
		return en, err
	}
	return en, ciba.UseTaken(ctx, e.Records, kindEnrolment, tokenKey(token), v, en.Expires, e.now(), func() error { return use(en) })
}

func (e *Enrolments) decode(v []byte, err error) (Enrolment, error) {
	var en Enrolment
	if errors.Is(err, ciba.ErrNotFound) {
		return en, ErrNotFound
	}
	if err != nil {
		return en, fmt.Errorf("passkey: read the enrolment: %w", err)
	}
	if err := json.Unmarshal(v, &en); err != nil {
		return en, fmt.Errorf("passkey: decode the enrolment: %w", err)
	}
	if !e.now().Before(en.Expires) {
		return en, ErrNotFound // a backend keeping it a little longer
	}
	return en, nil
}

// tokenKey is the store key of a token: its hash, so a store dump holds
// no usable link.
func tokenKey(token string) string {
	return hashString("cibaproxy passkey enrolment\x00" + token)
}
