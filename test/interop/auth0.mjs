// auth0.mjs drives CIBA against cibaproxy with Auth0's own client packages,
// unchanged but for the domain: the npm package auth0 (its
// AuthenticationClient's backchannel.authorize and backchannelGrant) and
// @auth0/ai (its asynchronous authorization, AsyncAuthorizerBase, in the
// blocking mode that polls until the user answers). auth0_test.go runs it:
//
//   node auth0.mjs backchannel DOMAIN CLIENT_ID SECRET USER_ID DETAILS_JSON AUDIENCE
//   node auth0.mjs ai          DOMAIN CLIENT_ID SECRET USER_ID DETAILS_JSON AUDIENCE
//   node auth0.mjs refused     DOMAIN CLIENT_ID SECRET USER_ID DETAILS_JSON AUDIENCE
//   node auth0.mjs jwt         DOMAIN CLIENT_ID -      USER_ID DETAILS_JSON AUDIENCE
//
// DOMAIN is host:port: both packages always speak https:// to it, so the
// Go test serves TLS with a test CA that NODE_EXTRA_CA_CERTS makes Node
// trust. Both send login_hint as {"format":"iss_sub","iss":"https://DOMAIN/",
// "sub":USER_ID}, authorization_details as a JSON string and
// requested_expiry as a string, and post the token request to /oauth/token.
// "refused" asks for AUDIENCE, which the client may not have, and reports
// the error the package raised. "jwt" is "backchannel" with private_key_jwt:
// the client authenticates with the PKCS #8 PEM key in CLIENT_ASSERTION_KEY,
// the package signing assertions whose aud is "https://DOMAIN/" (the issuer
// with a trailing slash). The script prints one JSON line and exits
// non-zero on failure.
//
// auth0 7 moved AuthenticationClient to auth0/legacy (auth0 4.x);
// @auth0/ai brings its own auth0 4.x. @auth0/ai's ES module build cannot
// be imported by Node (its imports lack file extensions:
// ERR_MODULE_NOT_FOUND ".../@auth0/ai/dist/esm/errors"), so its CommonJS
// build is loaded with require.

import { createRequire } from 'node:module';
import { AuthenticationClient } from 'auth0/legacy';
import { finish } from './common.mjs';

const require = createRequire(import.meta.url);
const DEADLINE_MS = 60_000;

const [mode, domain, clientId, clientSecret, userId, detailsJSON, audience] = process.argv.slice(2);
const details = JSON.parse(detailsJSON);

// claimsOf decodes a JWT's payload (its signature is the Go test's check).
function claimsOf(jwt) {
  return JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString('utf8'));
}

function result(tokens, extra = {}) {
  return {
    ok: true,
    mode,
    token_type: tokens.token_type ?? tokens.tokenType,
    access_token: tokens.access_token ?? tokens.accessToken,
    id_token: tokens.id_token ?? tokens.idToken,
    authorization_details: tokens.authorization_details ?? tokens.authorizationDetails,
    access_claims: claimsOf(tokens.access_token ?? tokens.accessToken),
    ...extra,
  };
}

// credentials are the client's: its secret, or in "jwt" mode its
// assertion signing key.
function credentials() {
  if (mode !== 'jwt') return { clientSecret };
  if (!process.env.CLIENT_ASSERTION_KEY) throw new Error('jwt mode needs CLIENT_ASSERTION_KEY');
  return { clientAssertionSigningKey: process.env.CLIENT_ASSERTION_KEY, clientAssertionSigningAlg: 'RS256' };
}

async function backchannel() {
  const auth = new AuthenticationClient({ domain, clientId, ...credentials(), telemetry: false });
  const started = await auth.backchannel.authorize({
    userId,
    scope: 'openid email',
    binding_message: `Pay 50 EUR to ACME (${mode})`,
    authorization_details: JSON.stringify(details),
    audience,
    requested_expiry: '300',
  });
  let interval = (started.interval ?? 5) * 1000;
  let pending = 0;
  const deadline = Date.now() + DEADLINE_MS;
  for (;;) {
    try {
      const tokens = await auth.backchannel.backchannelGrant({ auth_req_id: started.auth_req_id });
      return result(tokens, { auth_req_id: started.auth_req_id, pending });
    } catch (err) {
      if (Date.now() > deadline) throw err;
      if (err.error === 'authorization_pending') {
        pending++;
      } else if (err.error === 'slow_down') {
        // What @auth0/ai does: wait what Retry-After says.
        interval = Number(err.headers.get('retry-after')) * 1000;
      } else {
        throw err;
      }
    }
    await new Promise((r) => setTimeout(r, interval));
  }
}

async function ai() {
  const { AsyncAuthorizerBase, getAsyncAuthorizationCredentials } = require('@auth0/ai/AsyncAuthorization');
  const { MemoryStore } = require('@auth0/ai/stores');
  const authorizer = new AsyncAuthorizerBase(
    { domain, clientId, clientSecret },
    {
      scopes: ['openid', 'email'],
      userID: async () => userId,
      bindingMessage: async () => `Pay 50 EUR to ACME (${mode})`,
      authorizationDetails: async () => details,
      audience,
      store: new MemoryStore(),
      // Block: poll (honouring slow_down's Retry-After) until the user
      // answers, then run the tool.
      onAuthorizationRequest: 'block',
    },
  );
  const tool = authorizer.protect(
    () => ({ threadID: 't1', toolCallID: 'c1', toolName: 'pay' }),
    async () => getAsyncAuthorizationCredentials(),
  );
  const out = await tool({ amount: '50.00' });
  if (out instanceof Error) throw out;
  return result(out);
}

async function refused() {
  const auth = new AuthenticationClient({ domain, clientId, clientSecret, telemetry: false });
  try {
    await auth.backchannel.authorize({ userId, scope: 'openid', authorization_details: JSON.stringify(details), audience });
  } catch (err) {
    return { ok: true, mode, error: err.error, error_description: err.error_description, status: err.statusCode };
  }
  throw new Error('authorize succeeded; want a refusal');
}

const timer = setTimeout(() => finish({ ok: false, error: 'deadline passed' }, 1), DEADLINE_MS + 10_000);
try {
  const run = { backchannel, ai, refused, jwt: backchannel }[mode];
  if (!run) throw new Error(`unknown mode ${mode}`);
  const r = await run();
  clearTimeout(timer);
  finish(r, 0);
} catch (err) {
  clearTimeout(timer);
  finish({ ok: false, error: String(err?.message ?? err), code: err?.error, error_description: err?.error_description, status: err?.statusCode }, 1);
}
