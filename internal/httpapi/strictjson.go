package httpapi

import (
	"errors"
	"fmt"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// decodeBody decodes a JSON object that reached cibaproxy from outside (the
// callback of the authentication device, an upstream's ping) into v, with
// the rules of encoding/json/v2 as github.com/go-json-experiment/json
// implements them today: a member name that appears twice is refused
// (RFC 8259 §4 leaves duplicates to the parser; encoding/json v1 keeps the
// last, so {"status":"denied","status":"approved"} would approve), names
// match v's fields exactly (v1 also matches "STATUS"), and invalid UTF-8 is
// refused. Unknown members are ignored. shape is how the body should look,
// for the description.
//
// The refusal is an invalid_request whose description names the problem
// and the member, never a value.
func decodeBody(body []byte, v any, shape string) *ciba.Error {
	err := jsonv2.Unmarshal(body, v)
	if err == nil {
		return nil
	}
	var se *jsontext.SyntacticError
	if errors.As(err, &se) && errors.Is(se.Err, jsontext.ErrDuplicateName) {
		e := ciba.Errorf(ciba.CodeInvalidRequest, "the body has the member %q more than once; each member may appear once", truncate(se.JSONPointer.LastToken(), 32))
		e.Err = err
		return e
	}
	e := ciba.Errorf(ciba.CodeInvalidRequest, "the body must be a JSON object like %s", shape)
	e.Err = fmt.Errorf("decode body: %w", err)
	return e
}
