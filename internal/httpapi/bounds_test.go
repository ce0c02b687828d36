package httpapi

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// TestFormBounds checks that a form with too many parameters, or a value
// over its bound, is invalid_request naming the parameter and the bound,
// and that a form at the bounds passes.
func TestFormBounds(t *testing.T) {
	t.Parallel()
	many := url.Values{}
	for i := range maxParams + 1 {
		many.Set(fmt.Sprintf("p%d", i), "x")
	}
	atBound := url.Values{}
	for i := range maxParams - 3 {
		atBound.Set(fmt.Sprintf("p%d", i), "x")
	}
	atBound.Set("request", strings.Repeat("a", maxParamValue))
	atBound.Set("auth_req_id", strings.Repeat("a", maxIDValue))
	atBound.Set(strings.Repeat("n", maxParamName), "x")
	for _, tc := range []struct {
		name string
		form url.Values
		want []string // in the description; none: accepted
	}{
		{"too many parameters", many, []string{strconv.Itoa(maxParams)}},
		{"a request object over its bound", url.Values{"request": {strings.Repeat("a", maxParamValue+1)}}, []string{"request", strconv.Itoa(maxParamValue)}},
		{"an unknown parameter over the default bound", url.Values{"junk": {strings.Repeat("a", maxParamValue+1)}}, []string{"junk", strconv.Itoa(maxParamValue)}},
		{"an auth_req_id over its bound", url.Values{"auth_req_id": {strings.Repeat("a", maxIDValue+1)}}, []string{"auth_req_id", strconv.Itoa(maxIDValue)}},
		{"a device_code over its bound", url.Values{"device_code": {strings.Repeat("a", maxIDValue+1)}}, []string{"device_code", strconv.Itoa(maxIDValue)}},
		{"a grant_type over its bound", url.Values{"grant_type": {strings.Repeat("a", maxIDValue+1)}}, []string{"grant_type", strconv.Itoa(maxIDValue)}},
		{"a client_id over its bound", url.Values{"client_id": {strings.Repeat("a", maxIDValue+1)}}, []string{"client_id", strconv.Itoa(maxIDValue)}},
		{"a parameter given twice", url.Values{"auth_req_id": {"a", "b"}}, []string{"auth_req_id", "repeated"}},
		{"a parameter name too long", url.Values{strings.Repeat("n", maxParamName+1): {"x"}}, []string{strconv.Itoa(maxParamName)}},
		{"a long name given twice is refused for its length, not echoed", url.Values{strings.Repeat("n", 5000): {"x", "y"}}, []string{strconv.Itoa(maxParamName)}},
		{"a form at every bound", atBound, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := parseFormBody(tc.form.Encode())
			if tc.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			e := ciba.AsError(err)
			if e.Code != ciba.CodeInvalidRequest {
				t.Fatalf("err = %v, want invalid_request", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(e.Description, w) {
					t.Errorf("error_description %q does not name %q", e.Description, w)
				}
			}
		})
	}
}
