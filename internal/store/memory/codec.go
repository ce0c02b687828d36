package memory

import (
	"encoding/binary"
	"errors"
	"math"
	"time"
	"unsafe"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// Resident requests are kept encoded, one immutable string each, because
// what the garbage collector must do every cycle is mark the live heap: a
// request held as a ciba.AuthRequest is a struct of some thirty pointers to
// strings and slices, each scanned and followed, while a string is one
// object the collector marks without looking inside. With 100 000 pending
// requests that is the difference between about 1 µs and under 0.1 µs of
// marking per request per cycle (bench/memfill prints it), which on a
// poll-heavy server is a large part of the CPU left to answer polls.
//
// The encoding is private to the process (never written anywhere), so it
// has no version: a field is added by adding it to encodeRequest and
// decodeRequest in the same place, and TestCodecCoversEveryField fails until
// both know every field of ciba.AuthRequest.
//
// Layout: the ids first, which the store checks on every lookup (its maps
// are keyed by a hash of them, encodedIDs), then the fields a pending poll
// reads, so that pollView reads them without decoding the rest: ExpiresAt,
// Interval, ClientID, Kind, Status, CertThumbprint. Then every other field in declaration
// order. Strings and
// byte slices are a uvarint length and the bytes; integers and durations
// are varints; times are a varint of seconds and a uvarint of nanoseconds
// after a presence byte; lists are a uvarint count and their strings.

// errCorrupt is returned when an encoded request cannot be read: a bug,
// since only encodeRequest writes them.
var errCorrupt = errors.New("memory store: stored request is corrupt")

// encodeRequest returns the resident encoding of r.
func encodeRequest(r *ciba.AuthRequest) string {
	return string(appendRequest(make([]byte, 0, sizeHint(r)), r))
}

// sizeHint is about the size of r's encoding.
func sizeHint(r *ciba.AuthRequest) int {
	return 64 + len(r.ID) + len(r.ApprovalID) + len(r.ClientID) + len(r.Subject) + len(r.LoginHint) +
		len(r.BindingMessage) + len(r.UserCodeHash) + len(r.NotificationToken) + len(r.Result) + len(r.TraceParent) +
		len(r.Relay.ID) + len(r.CertThumbprint) + len(r.DPoPJKT) + len(r.AuthzDetails) + len(r.ApprovedDetails) + len(r.Actor) + len(r.ApprovalRecord) + 16*(len(r.Scopes)+len(r.ACRValues)+len(r.Resources))
}

// snapshotOf returns r as the store keeps it: one allocation holding the
// length of r's encoding (4 bytes, little endian) and the encoding, which
// snapshot reads back. Held through a *byte, a resident request is then
// one object without pointers, where a *string would be two objects, the
// string header among them for the collector to scan.
func snapshotOf(r *ciba.AuthRequest) *byte {
	b := appendRequest(make([]byte, 4, 4+sizeHint(r)), r)
	if len(b)-4 > math.MaxUint32 {
		panic("memory store: a request's encoding is over 4 GiB")
	}
	binary.LittleEndian.PutUint32(b, uint32(len(b)-4))
	return &b[0]
}

// snapshot returns the encoding held by p, made by snapshotOf. The string
// shares p's memory, which is never modified.
func snapshot(p *byte) string {
	n := binary.LittleEndian.Uint32(unsafe.Slice(p, 4))
	return unsafe.String((*byte)(unsafe.Add(unsafe.Pointer(p), 4)), n)
}

// appendRequest appends the resident encoding of r to b.
func appendRequest(b []byte, r *ciba.AuthRequest) []byte {
	b = appendString(b, r.ID)
	b = appendString(b, r.ApprovalID)
	// What a pending poll reads (pollView).
	b = appendTime(b, r.ExpiresAt)
	b = binary.AppendVarint(b, int64(r.Interval))
	b = appendString(b, r.ClientID)
	b = appendString(b, string(r.Kind))
	b = appendString(b, string(r.Status))
	b = appendString(b, r.CertThumbprint)
	b = appendString(b, r.DPoPJKT)
	// The rest, in declaration order.
	b = appendString(b, string(r.Mode))
	b = appendString(b, r.Subject)
	b = appendString(b, r.LoginHint)
	b = appendList(b, r.Scopes)
	b = appendList(b, r.ACRValues)
	b = appendString(b, r.BindingMessage)
	b = appendString(b, r.UserCodeHash)
	b = appendString(b, r.NotificationToken)
	b = appendTime(b, r.CreatedAt)
	b = appendTime(b, r.DecidedAt)
	b = appendTime(b, r.AuthTime)
	b = appendString(b, r.DenyReason)
	b = appendBytes(b, r.Result)
	b = appendDelivery(b, r.UserNotice)
	b = appendDelivery(b, r.ClientNotice)
	b = appendBytes(b, r.Relay.ID)
	b = binary.AppendVarint(b, int64(r.Relay.Interval))
	b = appendBool(b, r.Relay.Ping)
	b = appendTime(b, r.Relay.NextPoll)
	b = binary.AppendVarint(b, int64(r.Relay.Polls))
	b = binary.AppendVarint(b, int64(r.Relay.Failures))
	b = appendString(b, r.Relay.LastError)
	b = appendString(b, r.TraceParent)
	b = appendString(b, r.AuthzDetails)
	b = appendBool(b, r.PublicClient)
	b = appendString(b, r.ApprovedDetails)
	b = appendString(b, r.Actor)
	b = appendString(b, r.ApprovalRecord)
	b = appendList(b, r.Resources)
	return b
}

// decodeRequest returns the request encoded in s. Its strings share s's
// memory (s is immutable); its slices are its own, so the caller may modify
// the result like any copy.
func decodeRequest(s string) (*ciba.AuthRequest, error) {
	d := decoder{s: s}
	r := &ciba.AuthRequest{}
	r.ID = d.string()
	r.ApprovalID = d.string()
	r.ExpiresAt = d.time()
	r.Interval = time.Duration(d.varint())
	r.ClientID = d.string()
	r.Kind = ciba.Kind(d.string())
	r.Status = ciba.Status(d.string())
	r.CertThumbprint = d.string()
	r.DPoPJKT = d.string()
	r.Mode = ciba.DeliveryMode(d.string())
	r.Subject = d.string()
	r.LoginHint = d.string()
	r.Scopes = d.list()
	r.ACRValues = d.list()
	r.BindingMessage = d.string()
	r.UserCodeHash = d.string()
	r.NotificationToken = d.string()
	r.CreatedAt = d.time()
	r.DecidedAt = d.time()
	r.AuthTime = d.time()
	r.DenyReason = d.string()
	r.Result = d.bytes()
	r.UserNotice = d.delivery()
	r.ClientNotice = d.delivery()
	r.Relay.ID = d.bytes()
	r.Relay.Interval = time.Duration(d.varint())
	r.Relay.Ping = d.bool()
	r.Relay.NextPoll = d.time()
	r.Relay.Polls = int(d.varint())
	r.Relay.Failures = int(d.varint())
	r.Relay.LastError = d.string()
	r.TraceParent = d.string()
	r.AuthzDetails = d.string()
	r.PublicClient = d.bool()
	r.ApprovedDetails = d.string()
	r.Actor = d.string()
	r.ApprovalRecord = d.string()
	r.Resources = d.list()
	if d.bad || d.i != len(d.s) {
		return nil, errCorrupt
	}
	return r, nil
}

// pollView reads what a poll needs from an encoded request, without
// allocating: its strings share s's memory.
func pollView(s string) (ciba.PollView, error) {
	d := decoder{s: s}
	d.string() // ID
	d.string() // ApprovalID
	v := ciba.PollView{
		ExpiresAt: d.time(),
		Interval:  time.Duration(d.varint()),
		ClientID:  d.string(),
		Kind:      ciba.Kind(d.string()),
		Status:    ciba.Status(d.string()),
		// Read last: a keyed field's value is evaluated in order.
		CertThumbprint: d.string(),
		DPoPJKT:        d.string(),
	}
	if d.bad {
		return ciba.PollView{}, errCorrupt
	}
	return v, nil
}

// encodedIDs returns the ID and ApprovalID of an encoded request, without
// allocating; empty strings if s is corrupt.
func encodedIDs(s string) (id, approvalID string) {
	d := decoder{s: s}
	id, approvalID = d.string(), d.string()
	if d.bad {
		return "", ""
	}
	return id, approvalID
}

// sweepView reads what the dispatcher's sweep needs from an encoded request
// into v, without allocating: its strings share s's memory.
func sweepView(s string, v *ciba.SweepView) error {
	d := decoder{s: s}
	v.ID = d.string()
	d.string() // ApprovalID
	v.ExpiresAt = d.time()
	d.varint() // Interval
	d.string() // ClientID
	d.string() // Kind
	v.Status = ciba.Status(d.string())
	d.string() // CertThumbprint
	d.string() // DPoPJKT
	v.Mode = ciba.DeliveryMode(d.string())
	d.string() // Subject
	d.string() // LoginHint
	d.skipList()
	d.skipList()
	d.string() // BindingMessage
	d.string() // UserCodeHash
	d.string() // NotificationToken
	d.time()   // CreatedAt
	d.time()   // DecidedAt
	d.time()   // AuthTime
	d.string() // DenyReason
	v.HasResult = d.string() != ""
	v.NoticeDue = d.deliveryPending()
	v.NoticeDue = d.deliveryPending() || v.NoticeDue
	v.RelayActive = d.string() != ""
	d.varint() // Relay.Interval
	d.bool()   // Relay.Ping
	v.RelayNextPoll = d.time()
	if d.bad {
		return errCorrupt
	}
	return nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func appendList(b []byte, l []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(l)))
	for _, s := range l {
		b = appendString(b, s)
	}
	return b
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

// appendTime keeps the instant, not the location or monotonic reading: a
// stored time reads back in UTC, as after any store's round trip.
func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(b, 0)
	}
	b = append(b, 1)
	b = binary.AppendVarint(b, t.Unix())
	return binary.AppendUvarint(b, uint64(t.Nanosecond()))
}

func appendDelivery(b []byte, d ciba.Delivery) []byte {
	b = appendBool(b, d.Due)
	b = appendBool(b, d.Done)
	b = binary.AppendVarint(b, int64(d.Attempts))
	b = appendTime(b, d.NextAttempt)
	b = appendString(b, d.LastError)
	b = binary.AppendUvarint(b, uint64(len(d.Tries)))
	for _, t := range d.Tries {
		b = appendTime(b, t.At)
		b = appendString(b, t.Channel)
		b = appendString(b, t.Error)
		b = appendString(b, t.Outcome)
	}
	return b
}

// maxUnix bounds the seconds of a decoded time, far beyond any real one and
// far from where time.Unix's arithmetic would overflow.
const maxUnix = 1 << 60

// decoder reads an encoded request; after the first error every read
// returns a zero value and bad is set.
type decoder struct {
	s   string
	i   int
	bad bool
}

func (d *decoder) uvarint() uint64 {
	var v uint64
	for shift := uint(0); shift < 64; shift += 7 {
		if d.i >= len(d.s) {
			break
		}
		c := d.s[d.i]
		d.i++
		v |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return v
		}
	}
	d.bad = true
	return 0
}

func (d *decoder) varint() int64 {
	u := d.uvarint()
	v := int64(u >> 1)
	if u&1 != 0 {
		v = ^v
	}
	return v
}

func (d *decoder) string() string {
	n := d.uvarint()
	if d.bad || n > uint64(len(d.s)-d.i) {
		d.bad = true
		return ""
	}
	s := d.s[d.i : d.i+int(n)]
	d.i += int(n)
	return s
}

// bytes returns a copy; empty reads back as nil, as ciba.AuthRequest.Clone
// makes it.
func (d *decoder) bytes() []byte {
	s := d.string()
	if s == "" {
		return nil
	}
	return []byte(s)
}

// list returns a new slice; empty reads back as nil, as Clone makes it.
func (d *decoder) list() []string {
	n := d.uvarint()
	if d.bad || n > uint64(len(d.s)-d.i) { // each element takes a byte at least
		d.bad = true
		return nil
	}
	if n == 0 {
		return nil
	}
	l := make([]string, n)
	for i := range l {
		l[i] = d.string()
	}
	return l
}

// skipList reads past a list without allocating.
func (d *decoder) skipList() {
	n := d.uvarint()
	if d.bad || n > uint64(len(d.s)-d.i) {
		d.bad = true
		return
	}
	for range n {
		d.string()
	}
}

func (d *decoder) bool() bool {
	if d.i >= len(d.s) || d.s[d.i] > 1 {
		d.bad = true
		return false
	}
	d.i++
	return d.s[d.i-1] == 1
}

func (d *decoder) time() time.Time {
	if !d.bool() {
		return time.Time{}
	}
	sec := d.varint()
	nsec := d.uvarint()
	if nsec >= uint64(time.Second) || sec > maxUnix || sec < -maxUnix {
		d.bad = true
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec)).UTC()
}

// deliveryPending reads a delivery without allocating and reports whether
// it is pending (ciba.Delivery.Pending).
func (d *decoder) deliveryPending() bool {
	due, done := d.bool(), d.bool()
	d.varint()
	d.time()
	d.string()
	n := d.uvarint()
	if n > ciba.MaxTries*4 {
		d.bad = true
		return false
	}
	for range n {
		d.time()
		d.string()
		d.string()
		d.string()
	}
	return due && !done
}

func (d *decoder) delivery() ciba.Delivery {
	v := ciba.Delivery{
		Due:         d.bool(),
		Done:        d.bool(),
		Attempts:    int(d.varint()),
		NextAttempt: d.time(),
		LastError:   d.string(),
	}
	n := d.uvarint()
	if n > ciba.MaxTries*4 || n > uint64(len(d.s)-d.i) {
		d.bad = true
		return v
	}
	if n > 0 {
		v.Tries = make([]ciba.Try, n)
		for i := range v.Tries {
			v.Tries[i] = ciba.Try{At: d.time(), Channel: d.string(), Error: d.string(), Outcome: d.string()}
		}
	}
	return v
}
