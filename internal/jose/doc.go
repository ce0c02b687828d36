// Package jose verifies the JSON Web Tokens that reach cibaproxy from the
// outside: signed authentication requests (CIBA Core 1.0 §7.1.1), client
// assertions for private_key_jwt (RFC 7523 §3, OIDC Core §9), and the signed
// user hints login_hint_token and id_token_hint (CIBA §7.1).
//
// JWS parsing and signature verification are go-jose's
// (github.com/go-jose/go-jose/v4); keys published at a jwks_uri are fetched
// and cached by go-oidc's RemoteKeySet. This package adds what the
// specifications ask on top: the allowed algorithms, the claims, their order
// of checking (cheap checks first, the signature next, the replay record
// last) and errors (*ValidationError) whose descriptions say which token,
// which claim and what was expected, and never carry a secret. Which
// protocol error answers each (invalid_request, invalid_client,
// expired_login_hint_token, ...) is the caller's decision: the package
// knows JWTs, not the wire codes of RFC 6749 and CIBA, and imports no
// package of cibaproxy.
//
// Every verifier returns the token's claims decoded with json.Number for
// numbers, so a caller can tell 300 from "300" and from 300.5.
package jose
