// Command request-object prints a signed CIBA authentication request object
// (CIBA Core §7.1.1) for trying cibaproxy out:
//
//	go run ./scripts/request-object -key examples/keys/demo-poll.private.jwk \
//	    -client demo-poll -aud http://127.0.0.1:8080 login_hint=alice scope=openid
//
// Each NAME=VALUE argument becomes a claim (requested_expiry as a number);
// iss, aud, iat, nbf, exp and a random jti are added.
package main

import (
	"crypto/rand"
	"encoding/base64"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "request-object:", err)
		os.Exit(1)
	}
}

func run() error {
	keyFile := flag.String("key", "", "the client's private JWK file")
	client := flag.String("client", "", "client_id (iss)")
	aud := flag.String("aud", "http://127.0.0.1:8080", "cibaproxy's issuer (aud)")
	life := flag.Duration("exp", 5*time.Minute, "lifetime of the request object")
	flag.Parse()
	if *keyFile == "" || *client == "" {
		return fmt.Errorf("-key and -client are required")
	}
	raw, err := os.ReadFile(*keyFile)
	if err != nil {
		return err
	}
	var key jose.JSONWebKey
	if err := key.UnmarshalJSON(raw); err != nil {
		return fmt.Errorf("%s: %w", *keyFile, err)
	}
	if key.IsPublic() || key.Algorithm == "" {
		return fmt.Errorf("%s must be a private JWK with an alg", *keyFile)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(key.Algorithm), Key: key},
		(&jose.SignerOptions{}).WithType("oauth-authz-req+jwt")) // RFC 9101 §4: never a client assertion
	if err != nil {
		return err
	}
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return err
	}
	now := time.Now()
	claims := map[string]any{
		"iss": *client, "aud": *aud, "iat": now.Unix(), "nbf": now.Unix(),
		"exp": now.Add(*life).Unix(), "jti": base64.RawURLEncoding.EncodeToString(jti),
	}
	for _, arg := range flag.Args() {
		name, value, ok := strings.Cut(arg, "=")
		if !ok {
			return fmt.Errorf("argument %q is not NAME=VALUE", arg)
		}
		claims[name] = value
		if n, err := strconv.Atoi(value); err == nil && name == "requested_expiry" {
			claims[name] = n
		}
	}
	out, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		return err
	}
	fmt.Println(out)
	return nil
}
