// ciba.mjs drives a full CIBA flow against cibaproxy with openid-client, a
// certified OpenID relying-party library, so cibaproxy is checked against a
// client it did not write. interop_test.go runs it:
//
//   node ciba.mjs poll ISSUER CLIENT_ID SECRET LOGIN_HINT
//   node ciba.mjs ping ISSUER CLIENT_ID SECRET LOGIN_HINT NOTIFY_PORT
//   node ciba.mjs poll-dpop ISSUER CLIENT_ID SECRET LOGIN_HINT
//
// poll-dpop is poll with DPoP (RFC 9449) through openid-client's own
// support (getDPoPHandle): its backchannel authentication request carries
// no proof, so the request is bound with dpop_jkt (RFC 9449 §10), the
// thumbprint of the handle's key; the poll and the refresh send proofs.
//
// The user's approval is the Go test's business (its webhook receiver approves
// every request). The script prints one JSON line, {"ok":true,...} or
// {"ok":false,"error":...}, and exits non-zero on failure.
//
// CIBA_CLIENT_AUTH=basic switches client authentication from
// client_secret_post (openid-client's default) to client_secret_basic.

import * as client from 'openid-client';
import { createServer } from 'node:http';
import { createHash, randomBytes } from 'node:crypto';
import { describe, finish, report } from './common.mjs';

const GRANT_CIBA = 'urn:openid:params:grant-type:ciba';
// Bounds every wait, so a broken server cannot hang the test.
const DEADLINE_MS = 60_000;

function usage() {
  return 'usage: node ciba.mjs poll|ping|poll-dpop ISSUER CLIENT_ID SECRET LOGIN_HINT [NOTIFY_PORT]';
}

// jwkThumbprint is the RFC 7638 SHA-256 thumbprint of an EC public key,
// base64url: the dpop_jkt of RFC 9449 §10.
async function jwkThumbprint(publicKey) {
  const jwk = await crypto.subtle.exportKey('jwk', publicKey);
  if (jwk.kty !== 'EC') throw new Error(`unexpected DPoP key type ${jwk.kty}`);
  // The required members, in lexicographic order, no whitespace.
  const canonical = JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y });
  return createHash('sha256').update(canonical).digest('base64url');
}

// Starts the client notification endpoint (CIBA §10.2). It resolves
// `expect(authReqId)` with the first ping carrying the right bearer, whatever
// the order the ping and the bc-authorize answer arrive in.
async function notificationEndpoint(port, token) {
  const pings = [];
  let wake = () => {};
  const server = createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      let body;
      try {
        body = JSON.parse(raw);
      } catch {
        body = undefined;
      }
      const auth = req.headers.authorization ?? '';
      const ping = {
        method: req.method,
        path: req.url,
        contentType: req.headers['content-type'] ?? '',
        bearerOK: auth === `Bearer ${token}`,
        body,
      };
      pings.push(ping);
      if (req.method !== 'POST' || req.url !== '/notify') {
        res.writeHead(404).end();
      } else if (!ping.bearerOK) {
        // CIBA §10.2: the client checks the client_notification_token.
        res.writeHead(401, { 'WWW-Authenticate': 'Bearer error="invalid_token"' }).end();
      } else {
        res.writeHead(204).end();
      }
      wake();
    });
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  const expect = (authReqId, signal) =>
    new Promise((resolve, reject) => {
      const check = () => {
        const bad = pings.find((p) => !p.bearerOK || p.method !== 'POST');
        if (bad) {
          reject(new Error(`bad notification: ${JSON.stringify(bad)}`));
          return true;
        }
        const good = pings.find((p) => p.body?.auth_req_id === authReqId);
        if (good) {
          if (!/^application\/json\b/.test(good.contentType)) {
            reject(new Error(`ping Content-Type is ${JSON.stringify(good.contentType)}, want application/json`));
          } else {
            resolve(good);
          }
          return true;
        }
        const other = pings.find((p) => p.body?.auth_req_id !== authReqId);
        if (other) {
          reject(new Error(`ping for an unknown auth_req_id: ${JSON.stringify(other.body)}`));
          return true;
        }
        return false;
      };
      if (check()) return;
      wake = () => {
        check();
      };
      const timeout = () => reject(new Error('no ping arrived before the deadline'));
      if (signal.aborted) timeout();
      signal.addEventListener('abort', timeout, { once: true });
    });
  return { expect, close: () => server.close(), pings };
}

async function main() {
  const [mode, issuer, clientId, secret, loginHint, notifyPort] = process.argv.slice(2);
  if (!['poll', 'ping', 'poll-dpop'].includes(mode) || !issuer || !clientId || !secret || !loginHint) {
    throw new Error(usage());
  }
  if (mode === 'ping' && !notifyPort) {
    throw new Error('ping mode needs NOTIFY_PORT\n' + usage());
  }
  const signal = AbortSignal.timeout(DEADLINE_MS);

  const clientAuth = process.env.CIBA_CLIENT_AUTH === 'basic' ? client.ClientSecretBasic(secret) : undefined;
  // Plain http is only acceptable because everything runs on loopback.
  const config = await client.discovery(new URL(issuer), clientId, secret, clientAuth, {
    execute: [client.allowInsecureRequests],
  });
  // Validate the ID token's signature against the issuer's jwks_uri.
  client.enableNonRepudiationChecks(config);

  const meta = config.serverMetadata();
  if (!meta.backchannel_authentication_endpoint) {
    throw new Error('discovery has no backchannel_authentication_endpoint');
  }

  const params = { scope: 'openid email', login_hint: loginHint, binding_message: 'Code 1234' };
  let tokens;
  if (mode === 'poll-dpop') {
    if (!meta.dpop_signing_alg_values_supported?.includes('ES256')) {
      throw new Error('discovery does not list ES256 in dpop_signing_alg_values_supported');
    }
    const keyPair = await client.randomDPoPKeyPair('ES256');
    const DPoP = client.getDPoPHandle(config, keyPair);
    const jkt = await jwkThumbprint(keyPair.publicKey);
    const response = await client.initiateBackchannelAuthentication(config, { ...params, dpop_jkt: jkt });
    tokens = await client.pollBackchannelAuthenticationGrant(config, response, undefined, { signal, DPoP });
    const result = report(mode, tokens, response.auth_req_id, { jkt });
    if (!tokens.refresh_token) throw new Error('no refresh_token to refresh with DPoP');
    const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token, undefined, { DPoP });
    result.refresh = {
      ok: typeof refreshed.access_token === 'string' && refreshed.access_token !== tokens.access_token,
      rotated: typeof refreshed.refresh_token === 'string' && refreshed.refresh_token !== tokens.refresh_token,
      sub: refreshed.claims()?.sub,
      token_type: refreshed.token_type,
      access_token: refreshed.access_token,
    };
    result.access_token = tokens.access_token;
    // Userinfo (OIDC Core §5.3) with the refreshed DPoP-bound access
    // token: openid-client sends the DPoP scheme and a proof with ath, and
    // checks that the answer's sub is the ID token's.
    const info = await client.fetchUserInfo(config, refreshed.access_token, tokens.claims().sub, { DPoP });
    result.userinfo = { sub: info.sub, email: info.email };
    return result;
  }
  if (mode === 'poll') {
    const response = await client.initiateBackchannelAuthentication(config, params);
    tokens = await client.pollBackchannelAuthenticationGrant(config, response, undefined, { signal });
    const result = report(mode, tokens, response.auth_req_id);
    if (tokens.refresh_token) {
      // The refresh_token grant with the same library (RFC 6749 §6); the
      // new ID token, if any, is validated like the first.
      const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
      result.refresh = {
        ok: typeof refreshed.access_token === 'string' && refreshed.access_token !== tokens.access_token,
        rotated: typeof refreshed.refresh_token === 'string' && refreshed.refresh_token !== tokens.refresh_token,
        sub: refreshed.claims()?.sub,
      };
    }
    return result;
  }

  const notificationToken = randomBytes(24).toString('base64url');
  const endpoint = await notificationEndpoint(Number(notifyPort), notificationToken);
  try {
    const response = await client.initiateBackchannelAuthentication(config, {
      ...params,
      client_notification_token: notificationToken,
    });
    await endpoint.expect(response.auth_req_id, signal);
    tokens = await client.genericGrantRequest(config, GRANT_CIBA, { auth_req_id: response.auth_req_id });
    return report(mode, tokens, response.auth_req_id, { pings: endpoint.pings.length });
  } finally {
    endpoint.close();
  }
}

main().then(
  (result) => finish(result, 0),
  (err) => finish({ ok: false, ...describe(err) }, 1),
);
