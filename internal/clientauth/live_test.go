package clientauth

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

func TestLiveSwap(t *testing.T) {
	one := func(id, secret string) *Registry {
		r, err := NewRegistry(newReg(t, testOpts{Client: ciba.Client{ID: id, Mode: ciba.ModePoll}, Secret: secret, Methods: []string{MethodSecretBasic}}))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	live := NewLive(one("a", "secret-a"))
	auth := &Authenticator{Registry: live}
	try := func(id, secret string) error {
		req := httptest.NewRequest(http.MethodPost, "/token", nil)
		req.SetBasicAuth(id, secret)
		_, err := auth.Authenticate(t.Context(), req, url.Values{}, "https://issuer.example/token")
		return err
	}
	if err := try("a", "secret-a"); err != nil {
		t.Fatalf("client a before the swap: %v", err)
	}
	var wg sync.WaitGroup
	for range 4 { // readers racing the swap (go test -race)
		wg.Go(func() {
			for range 100 {
				_, _ = live.Lookup("a")
				_ = live.IDs()
			}
		})
	}
	old := live.Swap(one("b", "secret-b"))
	wg.Wait()
	if _, ok := old.Lookup("a"); !ok {
		t.Error("Swap did not return the replaced registry")
	}
	if err := try("b", "secret-b"); err != nil {
		t.Errorf("client b after the swap: %v", err)
	}
	if err := try("a", "secret-a"); err == nil {
		t.Error("client a still authenticates after it was swapped out")
	}
}
