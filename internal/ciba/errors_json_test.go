package ciba

import "testing"

// TestSharedErrorJSON: a shared error answers the same bytes each time,
// and a copy given another description (as the device grant's wording
// does) answers its own.
func TestSharedErrorJSON(t *testing.T) {
	e := (&Error{Code: CodeSlowDown, Description: "poll less often"}).Shared()
	want := `{"error":"slow_down","error_description":"poll less often"}`
	if got := string(e.JSON()); got != want {
		t.Fatalf("JSON() = %s, want %s", got, want)
	}
	if a, b := e.JSON(), e.JSON(); &a[0] != &b[0] {
		t.Error("a shared error encoded its answer again")
	}
	c := *e
	c.Description = "the device_code \"x\" is unknown"
	if got, want := string(c.JSON()), `{"error":"slow_down","error_description":"the device_code 'x' is unknown"}`; got != want {
		t.Errorf("copy with another description: JSON() = %s, want %s", got, want)
	}
	c = *e
	c.Code = CodeInvalidGrant
	if got, want := string(c.JSON()), `{"error":"invalid_grant","error_description":"poll less often"}`; got != want {
		t.Errorf("copy with another code: JSON() = %s, want %s", got, want)
	}
	if got := string((&Error{Code: CodeAccessDenied}).JSON()); got != `{"error":"access_denied"}` {
		t.Errorf("no description: JSON() = %s", got)
	}
}
