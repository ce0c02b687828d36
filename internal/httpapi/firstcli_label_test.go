package httpapi

import (
	"strings"
	"testing"
)

// TestDeviceCodeBoxLabel: on the device page the box holds the user code,
// not a binding message, and screen readers hear it called so.
func TestDeviceCodeBoxLabel(t *testing.T) {
	e := newDeviceEnv(t, false)
	_, uc := e.start(t, "tv", nil)
	status, body, _ := e.enter(t, browser(), uc)
	if status != 200 {
		t.Fatalf("continue: %d\n%s", status, body)
	}
	if strings.Contains(body, `aria-label="Binding message"`) || !strings.Contains(body, `aria-label="The code shown on your device">`+uc) {
		t.Errorf("the code box is not labelled as the device's code:\n%s", body)
	}
}
