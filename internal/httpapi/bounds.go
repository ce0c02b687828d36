package httpapi

import (
	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// Bounds of the form parameters of the POST endpoints (bc-authorize, token,
// device authorization), checked as the form is parsed, before client
// authentication or any lookup. The parameters of an authentication
// request have their own, tighter bounds in package ciba (ciba.MaxScope*
// and the rest), which also cover them inside a request object. The body
// itself is at most maxForm bytes (http.MaxBytesReader).
const (
	// maxParams bounds the distinct parameters of a form: a CIBA request
	// with client authentication uses at most about 15.
	maxParams = 50
	// maxParamValue bounds a parameter without a bound of its own, in
	// bytes: the size of the largest signed token package jose parses (a
	// request object, a client assertion), jose.DefaultMaxSize.
	maxParamValue = 16 << 10
	// maxIDValue bounds the identifiers a client sends (auth_req_id,
	// device_code, grant_type, client_id): cibaproxy's are well under 100
	// bytes. A refresh token, which may be an upstream's forwarded to it,
	// has maxParamValue.
	maxIDValue = 1 << 10
	// maxParamName bounds a parameter's name, in bytes: the longest one
	// cibaproxy knows, client_assertion_type, has 21.
	maxParamName = 64
)

// paramBound is the bound of the value of parameter k: maxIDValue for the
// identifiers, maxParamValue for the rest. A switch, not a map: it runs
// for every parameter of every poll.
func paramBound(k string) int {
	switch k {
	case "auth_req_id", "device_code", "grant_type", "client_id":
		return maxIDValue
	}
	return maxParamValue
}

// checkParams refuses a form with more than maxParams parameters, a name
// longer than maxParamName, a parameter given more than once or a value
// over its bound, naming the parameter (but not a name over its bound) and
// the bound. resource alone may repeat (RFC 8707 §2), up to
// ciba.MaxResources times; more is invalid_target, as ciba refuses more
// resource and audience values together. One pass over the form.
func checkParams(form map[string][]string) error {
	if len(form) > maxParams {
		return ciba.Errorf(ciba.CodeInvalidRequest, "the form has %d parameters; at most %d are allowed", len(form), maxParams)
	}
	for k, vs := range form {
		if len(k) > maxParamName {
			return ciba.Errorf(ciba.CodeInvalidRequest, "a parameter name is %d bytes; at most %d are allowed", len(k), maxParamName)
		}
		if len(vs) > 1 {
			if k != "resource" {
				return ciba.Errorf(ciba.CodeInvalidRequest, "parameter %q is repeated", k)
			}
			if len(vs) > ciba.MaxResources {
				return ciba.Errorf(ciba.CodeInvalidTarget, "parameter resource is given %d times; at most %d resource and audience values are allowed together", len(vs), ciba.MaxResources)
			}
		}
		for _, v := range vs {
			if limit := paramBound(k); len(v) > limit {
				return ciba.Errorf(ciba.CodeInvalidRequest, "parameter %q is %d bytes; at most %d are allowed", k, len(v), limit)
			}
		}
	}
	return nil
}
