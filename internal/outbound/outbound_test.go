package outbound

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestPostJSON(t *testing.T) {
	var gotAuth, gotType, gotBody string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth, gotType = r.Header.Get("Authorization"), r.Header.Get("Content-Type")
		b, _ := io.ReadAll(r.Body)
		gotBody = string(b)
		switch r.URL.Path {
		case "/ok":
			w.WriteHeader(http.StatusNoContent)
		case "/redirect":
			http.Redirect(w, r, "/ok", http.StatusTemporaryRedirect)
		case "/slow":
			time.Sleep(300 * time.Millisecond)
		default:
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	defer srv.Close()
	c := New(100 * time.Millisecond)
	ctx := context.Background()

	if err := c.PostJSON(ctx, srv.URL+"/ok", "tok", []byte(`{"a":1}`)); err != nil {
		t.Fatalf("2xx answer: %v", err)
	}
	if gotAuth != "Bearer tok" || gotType != "application/json" || gotBody != `{"a":1}` {
		t.Fatalf("sent auth %q, type %q, body %q", gotAuth, gotType, gotBody)
	}
	var se *StatusError
	if err := c.PostJSON(ctx, srv.URL+"/fail", "", nil); !errors.As(err, &se) || se.Status != 500 {
		t.Fatalf("a 500 answer is a failure: %v", err)
	}
	if err := c.PostJSON(ctx, srv.URL+"/redirect", "tok", nil); !errors.As(err, &se) || se.Status != 307 {
		t.Fatalf("a redirect is not followed (the bearer must not travel on): %v", err)
	}
	if err := c.PostJSON(ctx, srv.URL+"/slow", "", nil); err == nil {
		t.Fatal("a call past the timeout succeeded")
	}
	if err := c.PostJSON(ctx, "http://127.0.0.1:1/closed", "secret-bearer", nil); err == nil {
		t.Fatal("a closed port succeeded")
	} else if strings.Contains(err.Error(), "secret-bearer") {
		t.Fatalf("the bearer appears in the error: %v", err)
	}
}
