package memory

import (
	"context"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/store/storetest"
)

// fill sets every field of v (recursively through structs) to a random
// non-zero value, and fails the test on a field type it does not know: a new
// kind of field in ciba.AuthRequest needs the codec and this function taught.
func fill(t *testing.T, rng *rand.Rand, v reflect.Value, path string) {
	t.Helper()
	switch {
	case v.Type() == reflect.TypeFor[time.Time]():
		// Any instant, to the nanosecond, also before 1970.
		v.Set(reflect.ValueOf(time.Unix(rng.Int64N(1<<40)-1<<39, rng.Int64N(int64(time.Second))).UTC()))
		return
	case v.Type() == reflect.TypeFor[time.Duration]():
		v.SetInt(rng.Int64N(1<<50) + 1)
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(path + "-" + strings.Repeat("é\x00", rng.IntN(3)) + string(rune('a'+rng.IntN(26))))
	case reflect.Int, reflect.Int64:
		v.SetInt(rng.Int64N(1<<40) - 1<<39 | 1)
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Slice:
		n := 1 + rng.IntN(3)
		s := reflect.MakeSlice(v.Type(), n, n)
		for i := range n {
			fill(t, rng, s.Index(i), path)
		}
		v.Set(s)
	case reflect.Uint8:
		v.SetUint(uint64(rng.IntN(256)))
	case reflect.Struct:
		for i := range v.NumField() {
			fill(t, rng, v.Field(i), path+"."+v.Type().Field(i).Name)
		}
	default:
		t.Fatalf("field %s has a type (%s) the resident encoding does not know: add it to codec.go and to this test", path, v.Type())
	}
}

// TestCodecCoversEveryField round-trips requests whose every field is set:
// a field added to ciba.AuthRequest but not to encodeRequest and
// decodeRequest reads back zero and fails here.
func TestCodecCoversEveryField(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 200 {
		var r ciba.AuthRequest
		fill(t, rng, reflect.ValueOf(&r).Elem(), "r")
		got, err := decodeRequest(encodeRequest(&r))
		if err != nil {
			t.Fatalf("round %d: decode: %v", i, err)
		}
		if !reflect.DeepEqual(got, &r) {
			t.Fatalf("round %d: the request changed in the resident encoding:\n got %+v\nwant %+v", i, got, &r)
		}
	}
}

// TestCodecZeroValues: zero times, empty strings and nil slices read back
// as they went in, and a decoded copy is the caller's to change.
func TestCodecZeroValues(t *testing.T) {
	r := &ciba.AuthRequest{ID: "x"}
	enc := encodeRequest(r)
	got, err := decodeRequest(enc)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, r) {
		t.Fatalf("got %+v, want %+v", got, r)
	}
	full := storetest.NewRequest()
	enc = encodeRequest(full)
	a, _ := decodeRequest(enc)
	a.Scopes[0] = "changed"
	a.Result = append(a.Result, 'x')
	a.Relay.ID[0] = 'X'
	b, _ := decodeRequest(enc)
	if !storetest.SameRequest(b, full) {
		t.Fatalf("changing a decoded request changed the stored one: %+v", b)
	}
}

// TestPollViewMatchesTheRequest: the poll view reads the same values as the
// full decoding.
func TestPollViewMatchesTheRequest(t *testing.T) {
	r := storetest.NewRequest()
	v, err := pollView(encodeRequest(r))
	if err != nil {
		t.Fatal(err)
	}
	want := ciba.PollView{ClientID: r.ClientID, Kind: r.Kind, Status: r.Status, ExpiresAt: r.ExpiresAt, Interval: r.Interval, CertThumbprint: r.CertThumbprint}
	if !reflect.DeepEqual(v, want) {
		t.Fatalf("poll view %+v, want %+v", v, want)
	}
	enc := encodeRequest(r)
	if n := testing.AllocsPerRun(100, func() { _, _ = pollView(enc) }); n != 0 {
		t.Errorf("pollView allocates %v times per call, want 0", n)
	}
}

// TestStorePoll: the store's poll follows updates and deletion, and a poll
// of a pending request, on time or early, allocates nothing.
func TestStorePoll(t *testing.T) {
	ctx := context.Background()
	s := New()
	r := storetest.NewRequest()
	now := time.Now()
	q := ciba.PollQuery{ClientID: r.ClientID, Kind: r.Kind, Cert: r.CertThumbprint, Rule: ciba.PaceRule{Now: now, Step: 5 * time.Second}}
	if res, err := s.Poll(ctx, r.ID, q); err != nil || res.Outcome != ciba.PollUnknown {
		t.Fatalf("Poll of an unknown id = %+v, %v", res, err)
	}
	if err := s.CreateRequest(ctx, r); err != nil {
		t.Fatal(err)
	}
	if res, err := s.Poll(ctx, r.ID, q); err != nil || res.Outcome != ciba.PollPending {
		t.Fatalf("Poll = %+v, %v", res, err)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = s.Poll(ctx, r.ID, q) }); n != 0 {
		t.Errorf("Poll of a pending request allocates %v times per call, want 0", n)
	}
	if _, err := s.UpdateRequest(ctx, r.ID, func(r *ciba.AuthRequest) error { r.Status = ciba.StatusDenied; return nil }); err != nil {
		t.Fatal(err)
	}
	if res, _ := s.Poll(ctx, r.ID, q); res.Outcome != ciba.PollDone || res.Request.Status != ciba.StatusDenied {
		t.Fatalf("Poll after an update: %+v", res)
	}
	if err := s.DeleteRequest(ctx, r.ID); err != nil {
		t.Fatal(err)
	}
	if res, err := s.Poll(ctx, r.ID, q); err != nil || res.Outcome != ciba.PollUnknown {
		t.Fatalf("Poll of a deleted request = %+v, %v", res, err)
	}
}

// FuzzDecodeRequest: decoding never panics, and what decodes encodes to
// something that decodes to the same request.
func FuzzDecodeRequest(f *testing.F) {
	f.Add(encodeRequest(storetest.NewRequest()))
	f.Add(encodeRequest(&ciba.AuthRequest{}))
	f.Add("")
	f.Add("\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01")
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = pollView(s)
		r, err := decodeRequest(s)
		if err != nil {
			return
		}
		again, err := decodeRequest(encodeRequest(r))
		if err != nil {
			t.Fatalf("re-encoding a decoded request: %v", err)
		}
		if !reflect.DeepEqual(again, r) {
			t.Fatalf("re-encoded request differs:\n got %+v\nwant %+v", again, r)
		}
	})
}

// TestPollPaces: Poll applies the rule from the request's interval: the
// first poll is on time, one right after it is early and grows the
// interval.
func TestPollPaces(t *testing.T) {
	ctx := context.Background()
	s := New()
	r := storetest.NewRequest()
	if err := s.CreateRequest(ctx, r); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	q := ciba.PollQuery{ClientID: r.ClientID, Kind: r.Kind, Cert: r.CertThumbprint, Rule: ciba.PaceRule{Now: now, Step: 5 * time.Second}}
	if res, err := s.Poll(ctx, r.ID, q); err != nil || res.Outcome != ciba.PollPending {
		t.Fatalf("first poll: %+v, %v", res, err)
	}
	q.Rule.Now = now.Add(time.Second)
	if res, err := s.Poll(ctx, r.ID, q); err != nil || res.Outcome != ciba.PollSlow {
		t.Fatalf("early poll: %+v, %v", res, err)
	}
	p, err := s.UpdatePace(ctx, r.ID, func(*ciba.Pace) error { return nil })
	if err != nil || p.Interval != 10*time.Second || !p.NotBefore.Equal(now.Add(11*time.Second)) {
		t.Fatalf("pace after an early poll: %+v, %v", p, err)
	}
}

// TestSweepViewMatchesTheRequest: the sweep's view read from the encoding
// is the one built from the decoded request, for requests with every field
// set and with fields left empty, and reading it allocates nothing.
func TestSweepViewMatchesTheRequest(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 200 {
		var r ciba.AuthRequest
		fill(t, rng, reflect.ValueOf(&r).Elem(), "r")
		switch i % 4 { // also requests without result, relay or notices due
		case 1:
			r.Result, r.Relay.ID = nil, nil
		case 2:
			r.UserNotice.Due, r.ClientNotice.Done = false, true
		case 3:
			r.UserNotice.Done, r.ClientNotice.Due = true, false
		}
		enc := encodeRequest(&r)
		var got, want ciba.SweepView
		if err := sweepView(enc, &got); err != nil {
			t.Fatal(err)
		}
		dec, err := decodeRequest(enc)
		if err != nil {
			t.Fatal(err)
		}
		ciba.SweepViewOf(dec, &want)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("round %d: sweep view %+v, want %+v", i, got, want)
		}
		if n := testing.AllocsPerRun(10, func() { _ = sweepView(enc, &got) }); n != 0 {
			t.Fatalf("sweepView allocates %v times", n)
		}
	}
}

// TestSnapshotHoldsTheEncoding: what the store keeps (snapshotOf) reads
// back (snapshot) as the encoding itself, for a full request and an empty
// one.
func TestSnapshotHoldsTheEncoding(t *testing.T) {
	for _, r := range []*ciba.AuthRequest{storetest.NewRequest(), {}} {
		if got, want := snapshot(snapshotOf(r)), encodeRequest(r); got != want {
			t.Fatalf("snapshot(snapshotOf(r)) = %q, want the encoding %q", got, want)
		}
	}
}
