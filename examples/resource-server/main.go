// Command resource-server is a small protected resource that accepts the
// DPoP-bound access tokens cibaproxy's local issuer hands out (RFC 9068 JWT
// access tokens with cnf.jkt, RFC 9449) and shows what a resource server
// must check: the token's signature against the issuer's jwks_uri, typ
// at+jwt, iss, aud and exp, and a DPoP proof of the very key the token is
// bound to, for this request (htm, htu, iat, ath), used once (jti).
//
//	go run ./examples/resource-server -issuer http://127.0.0.1:8080 -listen 127.0.0.1:9090
//
// Then GET http://127.0.0.1:9090/hello with "Authorization: DPoP <access
// token>" and a DPoP proof for that URL. It answers the token's sub,
// client_id and scope as JSON, or 401 with a WWW-Authenticate: DPoP
// challenge naming the error.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

func main() {
	issuer := flag.String("issuer", "http://127.0.0.1:8080", "cibaproxy's issuer (iss of the tokens)")
	audience := flag.String("audience", "", "the aud the tokens must carry (default: the issuer, as cibaproxy's local issuer sets it)")
	listen := flag.String("listen", "127.0.0.1:9090", "address to listen on")
	public := flag.String("public-url", "", "this server's URL as clients call it (default: http://LISTEN)")
	flag.Parse()
	if *audience == "" {
		*audience = *issuer
	}
	if *public == "" {
		*public = "http://" + *listen
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	v := &Verifier{
		Issuer: *issuer, Audience: *audience,
		Keys:      remoteKeys(strings.TrimSuffix(*issuer, "/")+"/jwks", &http.Client{Timeout: 5 * time.Second}),
		TokenAlgs: DefaultAlgs, ProofAlgs: DefaultAlgs, Window: time.Minute,
	}
	srv := &http.Server{Addr: *listen, Handler: Handler(v, strings.TrimSuffix(*public, "/"), log), ReadHeaderTimeout: 5 * time.Second}
	log.Info("resource server listening", slog.String("addr", *listen), slog.String("issuer", *issuer))
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("serve", slog.Any("error", err))
		os.Exit(1)
	}
}

// Handler serves GET /hello to requests that v accepts; publicURL is the
// server's URL as clients call it (the proofs' htu).
func Handler(v *Verifier, publicURL string, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, r *http.Request) {
		c, err := v.Check(r.Context(), r, publicURL+"/hello")
		if err != nil {
			refuse(w, err, log)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(c)
	})
	return mux
}

// refuse answers 401 with a DPoP challenge (RFC 9449 §7.1), or 503 when
// the issuer's keys could not be read. No token or proof is logged.
func refuse(w http.ResponseWriter, err error, log *slog.Logger) {
	e := errAsAuth(err)
	if e == nil {
		log.Error("check request", slog.Any("error", err))
		http.Error(w, "the issuer's keys are unavailable", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("WWW-Authenticate", fmt.Sprintf(`DPoP error=%q, error_description=%q, algs="ES256 PS256 RS256 EdDSA"`, e.Code, e.Description))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusUnauthorized)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": e.Code, "error_description": e.Description})
}

// remoteKeys reads the key set at jwksURL, kept until a kid is not found,
// then read again at most once a minute.
func remoteKeys(jwksURL string, c *http.Client) KeySet {
	var (
		mu      sync.Mutex
		set     *jose.JSONWebKeySet
		fetched time.Time
	)
	return func(ctx context.Context, refresh bool) (*jose.JSONWebKeySet, error) {
		mu.Lock()
		defer mu.Unlock()
		if set != nil && (!refresh || time.Since(fetched) < time.Minute) {
			return set, nil
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, jwksURL, nil)
		if err != nil {
			return nil, err
		}
		resp, err := c.Do(req)
		if err != nil {
			return nil, fmt.Errorf("get %s: %w", jwksURL, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("get %s: HTTP %d", jwksURL, resp.StatusCode)
		}
		var s jose.JSONWebKeySet
		if err := json.NewDecoder(http.MaxBytesReader(nil, resp.Body, 1<<20)).Decode(&s); err != nil {
			return nil, fmt.Errorf("decode %s: %w", jwksURL, err)
		}
		set, fetched = &s, time.Now()
		return set, nil
	}
}
