// device.mjs drives the device authorization grant (RFC 8628) against
// cibaproxy with openid-client, as a TV or CLI would. device_test.go (and
// test/browser) run it:
//
//   node device.mjs ISSUER CLIENT_ID [SECRET]
//
// Without SECRET the client is public (token_endpoint_auth_method none).
// The script prints two JSON lines: first what the device shows the user,
// {"step":"show","user_code":…,"verification_uri":…,"verification_uri_complete":…,
// "expires_in":…,"interval":…} (never the device_code, a secret), which the
// Go test uses to approve on the verification page; then, once
// pollDeviceAuthorizationGrant has the tokens and the ID token is validated
// (signature against jwks_uri, iss, aud, exp) and the refresh token, if
// any, redeemed once with refreshTokenGrant, {"ok":true,…,"refresh":…}, or
// {"ok":false,"error":…} with a non-zero exit.
//
// DEVICE_DPOP=1 uses openid-client's DPoP support (getDPoPHandle): the
// device authorization request carries dpop_jkt (RFC 9449 §10; openid-client
// sends no proof there), the poll and the refresh carry proofs, and the
// result line adds the key's thumbprint (jkt), the access token and the
// refreshed token_type and access token.

import * as client from 'openid-client';
import { createHash } from 'node:crypto';
import { describe, finish, report } from './common.mjs';

// jwkThumbprint is the RFC 7638 SHA-256 thumbprint of an EC public key.
async function jwkThumbprint(publicKey) {
  const jwk = await crypto.subtle.exportKey('jwk', publicKey);
  const canonical = JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y });
  return createHash('sha256').update(canonical).digest('base64url');
}

// Bounds every wait, so a broken server cannot hang the test.
const DEADLINE_MS = 60_000;

async function main() {
  const [issuer, clientId, secret] = process.argv.slice(2);
  if (!issuer || !clientId) {
    throw new Error('usage: node device.mjs ISSUER CLIENT_ID [SECRET]');
  }
  const signal = AbortSignal.timeout(DEADLINE_MS);
  const clientAuth = secret ? client.ClientSecretBasic(secret) : client.None();
  // Plain http is only acceptable because everything runs on loopback.
  const config = await client.discovery(new URL(issuer), clientId, secret, clientAuth, {
    execute: [client.allowInsecureRequests],
  });
  client.enableNonRepudiationChecks(config);
  if (!config.serverMetadata().device_authorization_endpoint) {
    throw new Error('discovery has no device_authorization_endpoint');
  }

  let DPoP;
  let jkt;
  const params = { scope: 'openid email' };
  if (process.env.DEVICE_DPOP === '1') {
    const keyPair = await client.randomDPoPKeyPair('ES256');
    DPoP = client.getDPoPHandle(config, keyPair);
    jkt = await jwkThumbprint(keyPair.publicKey);
    params.dpop_jkt = jkt;
  }
  const response = await client.initiateDeviceAuthorization(config, params);
  process.stdout.write(
    JSON.stringify({
      step: 'show',
      user_code: response.user_code,
      verification_uri: response.verification_uri,
      verification_uri_complete: response.verification_uri_complete,
      expires_in: response.expires_in,
      interval: response.interval,
    }) + '\n',
  );
  const tokens = await client.pollDeviceAuthorizationGrant(config, response, undefined, { signal, DPoP });
  const result = report('device', tokens, undefined, DPoP ? { jkt, access_token: tokens.access_token } : {});
  if (tokens.refresh_token) {
    // The refresh_token grant with the same client authentication, None()
    // for a public client (RFC 9700 §4.14.2: its refresh tokens rotate).
    const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token, undefined, { DPoP });
    result.refresh = {
      ok: typeof refreshed.access_token === 'string' && refreshed.access_token !== tokens.access_token,
      rotated: typeof refreshed.refresh_token === 'string' && refreshed.refresh_token !== tokens.refresh_token,
      sub: refreshed.claims()?.sub,
      token_type: refreshed.token_type,
      access_token: DPoP ? refreshed.access_token : undefined,
    };
  }
  return result;
}

main().then(
  (result) => finish(result, 0),
  (err) => finish({ ok: false, ...describe(err) }, 1),
);
