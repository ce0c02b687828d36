package metrics

import (
	"strings"
	"testing"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// The metrics count the validation hook's outcomes for the ciba service,
// with a label bounded to allow, deny and error.
func TestObserveValidation(t *testing.T) {
	m := New()
	var o ciba.Observer = m
	v, ok := o.(ciba.ValidationObserver)
	if !ok {
		t.Fatal("Metrics is not a ciba.ValidationObserver: the service would count nothing")
	}
	for _, r := range []string{"allow", "allow", "deny", "error", "something else"} {
		v.ObserveValidation(r)
	}
	body := scrape(t, m)
	for _, want := range []string{
		`cibaproxy_validation_total{result="allow"} 2`,
		`cibaproxy_validation_total{result="deny"} 1`,
		`cibaproxy_validation_total{result="error"} 2`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(body, "something else") {
		t.Error("an unknown result became a label value")
	}
}
