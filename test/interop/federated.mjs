// federated.mjs is a CIBA client of cibaproxy's `oidc` upstream, written the
// way an integrator would write it with openid-client: the tokens it gets
// are the upstream IdP's, so it trusts the IdP's issuer and keys, and sends
// its CIBA traffic to cibaproxy. federation_test.go runs it:
//
//   node federated.mjs poll|ping GATEWAY IDP_ISSUER CLIENT_ID SECRET LOGIN_HINT BINDING_MESSAGE
//
// GATEWAY is cibaproxy's URL, IDP_ISSUER the issuer the client expects in
// cibaproxy's discovery document and in every ID token. In ping mode
// CIBA_NOTIFICATION_TOKEN is the client_notification_token: the notification
// endpoint belongs to the client's backend (here the Go test), which chose
// the token and checks it on the ping.
//
// The script talks to the test in JSON lines on stdout:
//
//   {"event":"initiated","auth_req_id":...}  the backchannel authentication was accepted
//   {"event":"pending"}                      poll: the first authorization_pending arrived
//   {"ok":true,...} or {"ok":false,...}      the result, always the last line
//
// In ping mode, after "initiated", it reads one line from stdin: the
// auth_req_id of the ping the notification endpoint received. Then it calls
// the token endpoint once. It exits non-zero on failure.

import * as client from 'openid-client';
import { createInterface } from 'node:readline';
import { describe, finish, report } from './common.mjs';

const GRANT_CIBA = 'urn:openid:params:grant-type:ciba';
// Bounds every wait, so a broken server cannot hang the test.
const DEADLINE_MS = 60_000;

function usage() {
  return 'usage: node federated.mjs poll|ping GATEWAY IDP_ISSUER CLIENT_ID SECRET LOGIN_HINT BINDING_MESSAGE';
}

function emit(event) {
  process.stdout.write(JSON.stringify(event) + '\n');
}

// gatewayConfiguration builds the openid-client Configuration from
// cibaproxy's discovery document.
//
// client.discovery() cannot be used as is. cibaproxy's document is the IdP's
// metadata with cibaproxy's token and backchannel authentication endpoints,
// so its issuer is the IdP's (the "iss" of the ID tokens the client will
// get), not cibaproxy's URL: discovery(GATEWAY) rightly rejects it as an
// issuer mismatch, and discovery(IDP_ISSUER) would send the CIBA requests to
// the IdP. discovery() given the document's own URL skips the issuer check,
// which openid-client documents as NOT RECOMMENDED. So the client fetches the
// document itself, makes the checks that discovery would have made against
// what it was told out of band — the issuer is the IdP it trusts, the CIBA
// and token endpoints are the gateway's — and passes the metadata to the
// Configuration constructor, the documented way for metadata known upfront.
// The jwks_uri is then the IdP's, so ID token signatures are checked against
// the IdP's keys.
async function gatewayConfiguration(gateway, idpIssuer, clientId, secret, signal) {
  const origin = new URL(gateway).origin;
  const url = new URL(gateway.replace(/\/$/, '') + '/.well-known/openid-configuration');
  const res = await fetch(url, { headers: { accept: 'application/json' }, redirect: 'manual', signal });
  if (res.status !== 200) {
    throw new Error(`GET ${url}: HTTP ${res.status}`);
  }
  const metadata = await res.json();
  if (metadata.issuer !== idpIssuer) {
    throw new Error(`the gateway's metadata says issuer ${JSON.stringify(metadata.issuer)}, want the IdP's ${JSON.stringify(idpIssuer)}`);
  }
  for (const k of ['token_endpoint', 'backchannel_authentication_endpoint']) {
    if (typeof metadata[k] !== 'string' || new URL(metadata[k]).origin !== origin) {
      throw new Error(`the gateway's metadata has ${k} ${JSON.stringify(metadata[k])}, want one at ${origin}`);
    }
  }
  if (typeof metadata.jwks_uri !== 'string') {
    throw new Error("the gateway's metadata has no jwks_uri");
  }
  const config = new client.Configuration(metadata, clientId, { client_secret: secret }, client.ClientSecretBasic(secret));
  // Plain http is only acceptable because everything runs on loopback.
  client.allowInsecureRequests(config);
  // Validate the ID token's signature against the jwks_uri: the IdP's keys.
  client.enableNonRepudiationChecks(config);
  return config;
}

// observe installs a customFetch that records, without changing anything,
// the token requests and their answers and the key sets fetched, and emits
// "pending" on the first authorization_pending.
function observe(config) {
  const { token_endpoint: tokenEndpoint } = config.serverMetadata();
  const seen = { token_requests: 0, pending: 0, jwks_fetched: [] };
  config[client.customFetch] = async (url, options) => {
    const res = await fetch(url, options);
    if (url === tokenEndpoint) {
      seen.token_requests++;
      if (res.status === 400) {
        const body = await res.clone().json().catch(() => undefined);
        if (body?.error === 'authorization_pending' && seen.pending++ === 0) {
          emit({ event: 'pending' });
        }
      }
    } else if (url === config.serverMetadata().jwks_uri) {
      seen.jwks_fetched.push(url);
    }
    return res;
  };
  return seen;
}

// readLine resolves with the first line on stdin.
function readLine(signal) {
  return new Promise((resolve, reject) => {
    const rl = createInterface({ input: process.stdin });
    let settled = false;
    const settle = (fn, v) => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      rl.close();
      fn(v);
    };
    const onAbort = () => settle(reject, new Error('nothing arrived on stdin before the deadline'));
    signal.addEventListener('abort', onAbort, { once: true });
    rl.once('line', (line) => settle(resolve, line.trim()));
    rl.once('close', () => settle(reject, new Error('stdin closed before the ping arrived')));
  });
}

async function main() {
  const [mode, gateway, idpIssuer, clientId, secret, loginHint, binding] = process.argv.slice(2);
  if (!['poll', 'ping'].includes(mode) || !gateway || !idpIssuer || !clientId || !secret || !loginHint || !binding) {
    throw new Error(usage());
  }
  const notificationToken = process.env.CIBA_NOTIFICATION_TOKEN;
  if (mode === 'ping' && !notificationToken) {
    throw new Error('ping mode needs CIBA_NOTIFICATION_TOKEN');
  }
  const signal = AbortSignal.timeout(DEADLINE_MS);
  const config = await gatewayConfiguration(gateway, idpIssuer, clientId, secret, signal);
  const seen = observe(config);

  const params = { scope: 'openid email', login_hint: loginHint, binding_message: binding };
  if (mode === 'ping') params.client_notification_token = notificationToken;
  const response = await client.initiateBackchannelAuthentication(config, params);
  emit({ event: 'initiated', auth_req_id: response.auth_req_id });

  let tokens;
  if (mode === 'poll') {
    tokens = await client.pollBackchannelAuthenticationGrant(config, response, undefined, { signal });
  } else {
    const pinged = await readLine(signal);
    if (pinged !== response.auth_req_id) {
      throw new Error(`ping for ${JSON.stringify(pinged)}, want ${JSON.stringify(response.auth_req_id)}`);
    }
    // CIBA §10.2: on the ping, the client makes one token request.
    tokens = await client.genericGrantRequest(config, GRANT_CIBA, { auth_req_id: response.auth_req_id });
  }
  return report(mode, tokens, response.auth_req_id, seen);
}

main().then(
  (result) => finish(result, 0),
  (err) => finish({ ok: false, ...describe(err) }, 1),
);
