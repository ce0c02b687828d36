package local_test

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/keys"
	"github.com/cibaproxy/cibaproxy/internal/limit"
	"github.com/cibaproxy/cibaproxy/internal/limit/limittest"
	"github.com/cibaproxy/cibaproxy/internal/store/memory"
	"github.com/cibaproxy/cibaproxy/internal/upstream/local"
)

// TestChecksRunInSlots: password and user-code checks run in
// Config.Slots, unknown usernames' included; while every slot is held,
// neither is checked: CheckPassword reports limit.ErrBusy and
// CheckUserCode temporarily_unavailable (503, Retry-After 1 s), even for
// the right secret, which is no invalid_user_code for the lockout.
func TestChecksRunInSlots(t *testing.T) {
	slots := limit.NewSlots(1, 20*time.Millisecond)
	u, err := local.New(local.Config{
		Issuer: issuer,
		Users:  []local.User{{Username: "alice", Subject: "sub-alice", PasswordHash: hash(t, "pw"), UserCodeHash: hash(t, "1234")}},
		Signer: newSigner(t), Hints: hints{}, LeftHash: keys.LeftHash, Store: memory.New(), Slots: slots,
	})
	if err != nil {
		t.Fatal(err)
	}
	alice := ciba.User{Subject: "sub-alice"}
	if _, ok, err := u.CheckPassword(t.Context(), "alice", "pw"); !ok || err != nil {
		t.Fatalf("right password: %v %v", ok, err)
	}
	if _, ok, err := u.CheckPassword(t.Context(), "ghost", "pw"); ok || err != nil {
		t.Fatalf("unknown user: %v %v", ok, err)
	}
	if err := u.CheckUserCode(t.Context(), alice, "1234"); err != nil {
		t.Fatalf("right code: %v", err)
	}
	if n := slots.Runs(); n != 3 {
		t.Fatalf("%d checks ran in the slots, want 3", n)
	}

	release := limittest.HoldSlots(t, slots)
	defer release()
	if _, ok, err := u.CheckPassword(t.Context(), "alice", "pw"); ok || !errors.Is(err, limit.ErrBusy) {
		t.Errorf("right password, slots held: %v %v, want ErrBusy", ok, err)
	}
	err = u.CheckUserCode(t.Context(), alice, "1234")
	if e := ciba.AsError(err); e.Code != ciba.CodeTemporarilyUnavailable || e.HTTPStatus() != http.StatusServiceUnavailable ||
		e.RetryAfter != time.Second || !errors.Is(err, limit.ErrBusy) {
		t.Errorf("right code, slots held: %v, want temporarily_unavailable 503 with Retry-After 1 s", err)
	}
	if n := slots.Runs(); n != 3+1 { // the holder
		t.Errorf("%d checks ran, want none while the slots were held", n-3-1)
	}
}
