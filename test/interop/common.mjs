// common.mjs holds what ciba.mjs and federated.mjs print the same way: the
// result line interop_test.go and federation_test.go decode, and the error
// line of a failed run.

// describe turns an error thrown by openid-client (or anything else) into
// the fields of a failure line: message, name, code, and for an OAuth error
// response the server's error, error_description and HTTP status.
export function describe(err) {
  const out = { error: String(err?.message ?? err) };
  for (const k of ['name', 'code', 'error', 'error_description', 'status']) {
    if (err?.[k] !== undefined) out[k] = err[k];
  }
  if (err?.cause !== undefined) {
    const c = err.cause;
    out.cause = c instanceof Error ? String(c.message) : c;
  }
  return out;
}

// finish prints the result line and exits with code once it is written.
export function finish(result, code) {
  process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(code));
}

// report is the success line for a token response whose ID token
// openid-client has validated. extra is merged in.
export function report(mode, tokens, authReqId, extra = {}) {
  const claims = tokens.claims();
  if (!claims) throw new Error('the token response has no ID token');
  return {
    ok: true,
    mode,
    sub: claims.sub,
    claims,
    auth_req_id: authReqId,
    token_type: tokens.token_type,
    has_access_token: typeof tokens.access_token === 'string' && tokens.access_token.length > 0,
    has_refresh_token: typeof tokens.refresh_token === 'string',
    expires_in: tokens.expiresIn(),
    ...extra,
  };
}
