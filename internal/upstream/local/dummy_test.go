package local

import (
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// TestDummyCost: the hash an unknown username's password is checked
// against costs what the users' hashes cost (the highest of them), so that
// the check takes as long for an unknown user as for a known one; without
// users, or with no valid hash, it is bcrypt.DefaultCost.
func TestDummyCost(t *testing.T) {
	hash := func(cost int) []byte {
		h, err := bcrypt.GenerateFromPassword([]byte("pw"), cost)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	low, higher := hash(bcrypt.MinCost), hash(bcrypt.MinCost+1)
	for _, tc := range []struct {
		name  string
		users []User
		want  int
	}{
		{"no users", nil, bcrypt.DefaultCost},
		{"one user", []User{{Username: "a", PasswordHash: low}}, bcrypt.MinCost},
		{"the highest cost", []User{{Username: "a", PasswordHash: low}, {Username: "b", PasswordHash: higher}}, bcrypt.MinCost + 1},
		{"no valid hash", []User{{Username: "a", PasswordHash: []byte("not a hash")}}, bcrypt.DefaultCost},
	} {
		if got := dummyCost(tc.users); got != tc.want {
			t.Errorf("%s: dummyCost = %d, want %d", tc.name, got, tc.want)
		}
	}
}
