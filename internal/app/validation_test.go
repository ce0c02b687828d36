package app

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/config"
	"github.com/cibaproxy/cibaproxy/internal/outbound"
)

const testHookSecret = "0123456789abcdef0123456789abcdef-cmd"

// hookOn is a validation hook on 127.0.0.1 that answers allow and counts
// its calls.
func hookOn(t *testing.T, h http.HandlerFunc) (*httptest.Server, chan struct{}) {
	t.Helper()
	calls := make(chan struct{}, 8)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls <- struct{}{}
		h(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, calls
}

func allow(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"allow":true}`)
}

func validatorFor(t *testing.T, hookURL string) ciba.Validator {
	t.Helper()
	cfg := &config.Config{Validation: config.Validation{
		URL: hookURL, Secret: testHookSecret, Timeout: 2 * time.Second, AllowHTTP: true,
	}}
	v, err := buildValidator(cfg, nil)
	if err != nil || v == nil {
		t.Fatalf("buildValidator = %v, %v", v, err)
	}
	return v
}

// The hook's URL is the operator's (SECURITY.md: "URLs only the operator
// sets … are not restricted by address: they are usually internal"): the
// hook the binary builds reaches a service on loopback, named by its
// address or by a host name resolving to it, with no allow list.
func TestValidatorReachesInternalHook(t *testing.T) {
	srv, calls := hookOn(t, allow)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	for name, hookURL := range map[string]string{
		"loopback IP literal":             srv.URL + "/validate",
		"host name resolving to loopback": "http://localhost:" + u.Port() + "/validate",
	} {
		t.Run(name, func(t *testing.T) {
			verdict, err := validatorFor(t, hookURL).Validate(context.Background(), ciba.Validation{ClientID: "c1", HintType: "login_hint", Subject: "alice"})
			if err != nil || !verdict.Allow {
				t.Fatalf("Validate = %+v, %v; want the internal hook's allow", verdict, err)
			}
			select {
			case <-calls:
			default:
				t.Fatal("the internal hook was not called")
			}
		})
	}
}

// The client the binary builds follows no redirect: the call and its
// signature never reach the redirect's target.
func TestValidatorFollowsNoRedirect(t *testing.T) {
	target, reached := hookOn(t, allow)
	srv, _ := hookOn(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+"/validate", http.StatusTemporaryRedirect)
	})
	verdict, err := validatorFor(t, srv.URL+"/validate").Validate(context.Background(), ciba.Validation{ClientID: "c1", HintType: "login_hint", Subject: "alice"})
	var se *outbound.StatusError
	if !errors.As(err, &se) || se.Status != http.StatusTemporaryRedirect {
		t.Fatalf("Validate = %+v, %v; want no verdict, HTTP 307", verdict, err)
	}
	select {
	case <-reached:
		t.Fatal("the redirect was followed")
	default:
	}
}

// No hook configured, no validator.
func TestValidatorOff(t *testing.T) {
	if v, err := buildValidator(&config.Config{}, nil); v != nil || err != nil {
		t.Fatalf("buildValidator without validation.url = %v, %v; want nil, nil", v, err)
	}
}
