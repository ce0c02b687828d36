// TEST-ONLY OpenID Provider for cibaproxy's tests.
//
// A thin configuration of node-oidc-provider (a certified OpenID Provider that
// cibaproxy did not write) so the `oidc` (federation) and `ciba` (relay)
// upstream kinds are tested against a real third-party IdP on loopback.
//
//   node server.mjs <config.json>
//
// It prints one line "ready <issuer>" on stdout once it listens and exits on
// SIGTERM or SIGINT. The config format is documented in README.md and written
// by the Go package idp (idp.go). Nothing here is fit for production: devInteractions
// accept plain-text passwords from the config, the /__test/ API lets anyone
// approve CIBA requests, and SSRF protection of outgoing requests is off so
// ping notifications can reach http://127.0.0.1.

import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import {
  existsSync, mkdirSync, readFileSync, renameSync, writeFileSync,
} from 'node:fs';
import * as path from 'node:path';
import * as querystring from 'node:querystring';

import Provider, { errors } from 'oidc-provider';

const CIBA_GRANT = 'urn:openid:params:grant-type:ciba';
const BODY_LIMIT = 64 * 1024;

const cfg = JSON.parse(readFileSync(process.argv[2], 'utf8'));
if (!cfg.issuer || !cfg.port) {
  throw new Error('config: issuer and port are required');
}
if (cfg.data_dir) {
  mkdirSync(cfg.data_dir, { recursive: true });
}

// ---------------------------------------------------------------------------
// Accounts

const accounts = new Map();
for (const a of cfg.accounts ?? []) {
  if (!a.account_id) throw new Error('config: account without account_id');
  accounts.set(a.account_id, a);
}

// accountIdFor resolves a login or login_hint: an account id or an e-mail
// address from the config. Unknown values give undefined.
function accountIdFor(hint) {
  if (typeof hint !== 'string' || !hint) return undefined;
  if (accounts.has(hint)) return hint;
  for (const a of accounts.values()) {
    if (a.email && a.email.toLowerCase() === hint.toLowerCase()) return a.account_id;
  }
  return undefined;
}

// findAccount resolves only configured accounts; any other id gives undefined
// (the provider then treats the end-user as unknown).
async function findAccount(_ctx, id) {
  const a = accounts.get(id);
  if (!a) return undefined;
  return {
    accountId: id,
    async claims() {
      const claims = { sub: id };
      for (const k of ['email', 'email_verified', 'preferred_username', 'name']) {
        if (a[k] !== undefined && a[k] !== '') claims[k] = a[k];
      }
      return claims;
    },
  };
}

// ---------------------------------------------------------------------------
// File-backed adapter: every model instance is one entry of one JSON file in
// data_dir, rewritten atomically on each change, so a killed and restarted
// IdP keeps sessions, grants, codes, tokens and pending CIBA requests. Lookups
// other than by id scan the entries: the data set of a test is small.

class FileStore {
  constructor(file) {
    this.file = file;
    this.entries = new Map();
    if (file && existsSync(file)) {
      const now = Date.now();
      for (const [key, entry] of JSON.parse(readFileSync(file, 'utf8'))) {
        if (!entry.expiresAt || entry.expiresAt > now) this.entries.set(key, entry);
      }
    }
  }

  get(key) {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt && entry.expiresAt <= Date.now()) {
      this.entries.delete(key);
      return undefined;
    }
    return structuredClone(entry.payload);
  }

  set(key, payload, expiresAt) {
    this.entries.set(key, { payload: structuredClone(payload), expiresAt });
    this.flush();
  }

  delete(key) {
    if (this.entries.delete(key)) this.flush();
  }

  // scan(prefix) yields [key, entry] of live entries whose key starts with prefix.
  * scan(prefix) {
    const now = Date.now();
    for (const [key, entry] of this.entries) {
      if (key.startsWith(prefix) && (!entry.expiresAt || entry.expiresAt > now)) {
        yield [key, entry];
      }
    }
  }

  flush() {
    if (!this.file) return;
    const tmp = `${this.file}.tmp`;
    writeFileSync(tmp, JSON.stringify([...this.entries]), { mode: 0o600 });
    renameSync(tmp, this.file);
  }
}

const store = new FileStore(cfg.data_dir ? path.join(cfg.data_dir, 'store.json') : undefined);

class FileAdapter {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    const expiresAt = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : undefined;
    store.set(this.key(id), payload, expiresAt);
  }

  async find(id) {
    return store.get(this.key(id));
  }

  async findByUid(uid) {
    for (const [, entry] of store.scan(`${this.model}:`)) {
      if (entry.payload.uid === uid) return structuredClone(entry.payload);
    }
    return undefined;
  }

  async findByUserCode(userCode) {
    for (const [, entry] of store.scan(`${this.model}:`)) {
      if (entry.payload.userCode === userCode) return structuredClone(entry.payload);
    }
    return undefined;
  }

  async consume(id) {
    const key = this.key(id);
    const entry = store.entries.get(key);
    if (!entry) return;
    entry.payload.consumed = Math.floor(Date.now() / 1000);
    store.flush();
  }

  async destroy(id) {
    store.delete(this.key(id));
  }

  async revokeByGrantId(grantId) {
    let changed = false;
    for (const [key, entry] of store.entries) {
      if (entry.payload?.grantId === grantId && !key.startsWith('Grant:')) {
        store.entries.delete(key);
        changed = true;
      }
    }
    if (changed) store.flush();
  }
}

// ---------------------------------------------------------------------------
// Keys: an RS256 and an ES256 signing key and a cookie key, kept in data_dir
// so a restart serves the same jwks_uri and accepts the same cookies.

function loadOrCreate(name, create) {
  const file = cfg.data_dir ? path.join(cfg.data_dir, name) : undefined;
  if (file && existsSync(file)) return JSON.parse(readFileSync(file, 'utf8'));
  const value = create();
  if (file) writeFileSync(file, JSON.stringify(value), { mode: 0o600 });
  return value;
}

const jwks = loadOrCreate('jwks.json', () => {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  return {
    keys: [
      { ...rsa, kid: `rs256-${randomUUID()}`, alg: 'RS256', use: 'sig' },
      { ...ec, kid: `es256-${randomUUID()}`, alg: 'ES256', use: 'sig' },
    ],
  };
});

const cookieKeys = loadOrCreate('cookie-keys.json', () => [randomBytes(32).toString('base64url')]);

// ---------------------------------------------------------------------------
// Clients

// node-oidc-provider only accepts https backchannel_client_notification_endpoint
// values. The one named exception of this test IdP: an http loopback endpoint
// from the config is registered under its https spelling and the fetch below
// sends the ping to the original http URL.
const pingAliases = new Map();

function clientMetadata(c) {
  const grantTypes = c.grant_types?.length ? c.grant_types : ['authorization_code', 'refresh_token'];
  const m = {
    client_id: c.client_id,
    grant_types: grantTypes,
    response_types: grantTypes.includes('authorization_code') ? ['code'] : [],
    redirect_uris: c.redirect_uris ?? [],
    token_endpoint_auth_method: c.token_endpoint_auth_method || (c.client_secret ? 'client_secret_basic' : 'none'),
  };
  if (c.client_secret) m.client_secret = c.client_secret;
  if (cfg.rar_types?.length) m.authorization_details_types = cfg.rar_types;
  if (c.id_token_signed_response_alg) m.id_token_signed_response_alg = c.id_token_signed_response_alg;
  if (c.post_logout_redirect_uris) m.post_logout_redirect_uris = c.post_logout_redirect_uris;
  if (grantTypes.includes(CIBA_GRANT)) {
    m.backchannel_token_delivery_mode = c.backchannel_token_delivery_mode || 'poll';
    const endpoint = c.backchannel_client_notification_endpoint;
    if (endpoint) {
      const u = new URL(endpoint);
      if (u.protocol === 'http:') {
        u.protocol = 'https:';
        pingAliases.set(u.href, endpoint);
      }
      m.backchannel_client_notification_endpoint = u.href;
    }
  }
  return m;
}

// ---------------------------------------------------------------------------
// Provider

const provider = new Provider(cfg.issuer, {
  adapter: FileAdapter,
  clients: (cfg.clients ?? []).map(clientMetadata),
  jwks,
  cookies: { keys: cookieKeys },
  findAccount,
  scopes: ['openid', 'offline_access', 'email', 'profile'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
  },
  // The ID token carries the claims of the granted scopes (email,
  // preferred_username…), not only when an access token cannot fetch them.
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  // node-oidc-provider's default lifetimes, spelled out (seconds).
  ttl: {
    AccessToken: 60 * 60,
    AuthorizationCode: 60,
    BackchannelAuthenticationRequest: (ctx) => Math.min(10 * 60, +(ctx?.oidc?.params.requested_expiry ?? 10 * 60)),
    ClientCredentials: 10 * 60,
    DeviceCode: 10 * 60,
    Grant: 14 * 24 * 60 * 60,
    IdToken: 60 * 60,
    Interaction: 60 * 60,
    RefreshToken: 14 * 24 * 60 * 60,
    Session: 14 * 24 * 60 * 60,
  },
  // A refresh token for a client allowed the refresh_token grant when
  // offline_access was granted (for the code flow it is only kept when the
  // authorization request has prompt=consent, per OIDC Core 11).
  issueRefreshToken: async (_ctx, client, source) => client.grantTypeAllowed('refresh_token')
    && source.scopes.has('offline_access'),
  // Every client is configured by the test, so every one is trusted: the grant
  // covers what the request asks and no consent page is shown unless the
  // request says prompt=consent.
  loadExistingGrant: async (ctx) => {
    const consented = ctx.oidc.result?.consent?.grantId;
    const grantId = consented || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    let grant = grantId ? await ctx.oidc.provider.Grant.find(grantId) : undefined;
    if (consented) return grant;
    grant ||= new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope([...ctx.oidc.requestParamOIDCScopes].join(' '));
    grant.addOIDCClaims([...ctx.oidc.requestParamClaims]);
    await grant.save();
    return grant;
  },
  features: {
    devInteractions: { enabled: true },
    deviceFlow: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    ciba: {
      enabled: true,
      deliveryModes: ['poll', 'ping'],
      async processLoginHint(_ctx, loginHint) {
        return accountIdFor(loginHint); // undefined → unknown_user_id
      },
      async processLoginHintToken() {
        throw new errors.InvalidRequest('login_hint_token is not supported by this test IdP');
      },
      async validateRequestContext() {},
      async validateBindingMessage(_ctx, bindingMessage) {
        if (bindingMessage !== undefined && !/^[a-zA-Z0-9-._+/!?#]{1,20}$/.test(bindingMessage)) {
          throw new errors.InvalidBindingMessage('binding_message must be 1 to 20 of [a-zA-Z0-9-._+/!?#]');
        }
      },
      async verifyUserCode(_ctx, account, userCode) {
        const expected = accounts.get(account.accountId)?.user_code;
        if (!expected) return;
        if (!userCode) throw new errors.MissingUserCode();
        if (userCode !== expected) throw new errors.InvalidUserCode();
      },
      // The request is stored by the adapter; /__test/ciba/pending lists it.
      async triggerAuthenticationDevice() {},
    },
    // Rich Authorization Requests (RFC 9396), on when the test lists types
    // (rar_types): any detail of a listed type is accepted, granted as
    // requested and carried into the access token and the token response.
    richAuthorizationRequests: {
      enabled: (cfg.rar_types ?? []).length > 0,
      types: Object.fromEntries((cfg.rar_types ?? []).map((t) => [t, { validate() {} }])),
      authorizationDetailsForGrantSource: (ctx, source) => source.rar
        ?? (ctx.oidc.params?.authorization_details ? JSON.parse(ctx.oidc.params.authorization_details) : undefined),
      authorizationDetailsForAccessToken: (_ctx, _token, source) => source?.rar,
      authorizationDetailsForIntrospection: (_ctx, token) => token.rar,
    },
    // node-oidc-provider requires a resource indicator with RAR: the
    // request's resource (RFC 8707), else https://api.example.test/.
    resourceIndicators: {
      enabled: (cfg.rar_types ?? []).length > 0,
      defaultResource: (_ctx, _client, oneOf) => oneOf ?? 'https://api.example.test/',
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, resource) => ({ scope: 'api', audience: resource, accessTokenFormat: 'opaque' }),
    },
  },
  // Test-only: no SSRF protection, so pings reach loopback notification endpoints.
  fetch: (url, options) => {
    const { dispatcher, ...rest } = options; // eslint-disable-line no-unused-vars
    const target = pingAliases.get(new URL(url).href) ?? url;
    return globalThis.fetch(target, rest);
  },
});

// ---------------------------------------------------------------------------
// Request counter: per path and, for the token endpoint, per grant_type and
// per error code. In memory: a restart starts again from zero.

const tokenPath = '/token'; // node-oidc-provider's default route
let counts = newCounts();

function newCounts() {
  return { paths: {}, grant_types: {}, token_errors: {} };
}

function inc(map, key) {
  map[key] = (map[key] ?? 0) + 1;
}

provider.use(async (ctx, next) => {
  if (ctx.path.startsWith('/__test/')) {
    await testAPI(ctx);
    return;
  }
  if (ctx.method === 'POST' && /^\/interaction\/[^/]+$/.test(ctx.path)) {
    inc(counts.paths, ctx.path.replace(/[^/]+$/, ':uid'));
    await interactionSubmit(ctx);
    return;
  }
  inc(counts.paths, ctx.path.startsWith('/interaction/') ? '/interaction/:uid' : ctx.path);
  await next();
  if (ctx.path === tokenPath) {
    inc(counts.grant_types, ctx.oidc?.params?.grant_type ?? 'unknown');
    if (ctx.body && typeof ctx.body === 'object' && ctx.body.error) {
      inc(counts.token_errors, ctx.body.error);
    }
  }
  if (cfg.ciba_interval && ctx.status === 200 && ctx.body?.auth_req_id) {
    ctx.body.interval = cfg.ciba_interval;
  }
});

async function readForm(ctx) {
  const chunks = [];
  let size = 0;
  for await (const chunk of ctx.req) {
    size += chunk.length;
    if (size > BODY_LIMIT) ctx.throw(413, 'request body too large');
    chunks.push(chunk);
  }
  const raw = Buffer.concat(chunks).toString('utf8');
  if (ctx.is('application/json')) return raw ? JSON.parse(raw) : {};
  return querystring.parse(raw);
}

// interactionSubmit replaces the devInteractions submit handler so the login
// form checks the account: a login that is neither a configured account id nor
// its e-mail, or a wrong password for an account that has one, ends the
// authorization request with access_denied at the client's redirect_uri.
async function interactionSubmit(ctx) {
  const body = await readForm(ctx);
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  let result;
  let merge = false;
  if (body.prompt === 'login' && details.prompt.name === 'login') {
    const accountId = accountIdFor(body.login);
    const expected = accountId ? accounts.get(accountId).password : undefined;
    if (!accountId || (expected && body.password !== expected)) {
      result = { error: 'access_denied', error_description: 'unknown account or wrong password' };
    } else {
      result = { login: { accountId } };
    }
  } else if (body.prompt === 'consent' && details.prompt.name === 'consent') {
    const { grantId, session, params } = details;
    const grant = grantId
      ? await provider.Grant.find(grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    const d = details.prompt.details;
    if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
    if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
    for (const [indicator, scope] of Object.entries(d.missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scope.join(' '));
    }
    result = { consent: { grantId: await grant.save() } };
    merge = true;
  } else {
    ctx.throw(400, 'unexpected interaction submission');
  }
  const returnTo = await provider.interactionResult(ctx.req, ctx.res, result, {
    mergeWithLastSubmission: merge,
  });
  ctx.status = 303;
  ctx.redirect(returnTo);
}

// ---------------------------------------------------------------------------
// TEST-ONLY control API under /__test/.

function pendingRequests() {
  const list = [];
  const now = Math.floor(Date.now() / 1000);
  for (const [key, entry] of store.scan('BackchannelAuthenticationRequest:')) {
    const p = entry.payload;
    if (p.grantId || p.error || p.consumed || (p.exp && p.exp <= now)) continue;
    list.push({
      auth_req_id: key.slice(key.indexOf(':') + 1),
      client_id: p.clientId,
      account_id: p.accountId,
      scope: p.scope,
      binding_message: p.params?.binding_message,
      login_hint: p.params?.login_hint,
      authorization_details: p.params?.authorization_details ? JSON.parse(p.params.authorization_details) : undefined,
      resource: p.params?.resource,
      expires_at: p.exp,
    });
  }
  return list.sort((a, b) => a.expires_at - b.expires_at);
}

// selectPending picks the pending requests named by {auth_req_id},
// {login_hint} (every pending request of that account) or {match} (either).
function selectPending(body) {
  const pending = pendingRequests();
  const byId = (id) => pending.filter((p) => p.auth_req_id === id);
  const byHint = (hint) => {
    const accountId = accountIdFor(hint);
    return accountId ? pending.filter((p) => p.account_id === accountId) : [];
  };
  if (body.auth_req_id) return byId(body.auth_req_id);
  if (body.login_hint) return byHint(body.login_hint);
  if (body.match) {
    const found = byId(body.match);
    return found.length ? found : byHint(body.match);
  }
  return [];
}

async function resolveCIBA(ctx, approve) {
  const body = await readForm(ctx);
  const selected = selectPending(body);
  if (!selected.length) {
    ctx.status = 404;
    ctx.body = { error: 'no matching pending CIBA request' };
    return;
  }
  const done = [];
  const pingErrors = [];
  for (const p of selected) {
    const request = await provider.BackchannelAuthenticationRequest.find(p.auth_req_id);
    if (!request) continue;
    let result;
    let rar;
    if (approve) {
      result = new provider.Grant({ accountId: request.accountId, clientId: request.clientId });
      result.addOIDCScope(request.scope);
      if (request.resource) {
        for (const r of [request.resource].flat()) result.addResourceScope(r, 'api');
      }
      // node-oidc-provider checks authorization_details at its
      // backchannel endpoint but keeps them in the request's params only;
      // the approval grants them as asked, so the tokens carry them.
      if (request.params?.authorization_details) {
        rar = JSON.parse(request.params.authorization_details);
      }
      const claims = request.claims ?? {};
      result.addOIDCClaims([...Object.keys(claims.id_token ?? {}), ...Object.keys(claims.userinfo ?? {})]);
      await result.save();
    } else {
      result = new errors.AccessDenied('end-user denied the authentication request');
    }
    try {
      await provider.backchannelResult(request, result, { authTime: Math.floor(Date.now() / 1000), rar });
    } catch (err) {
      // The result is saved before the ping; only the notification failed.
      pingErrors.push(`${p.client_id}: ${err.message}`);
    }
    done.push(p.auth_req_id);
  }
  ctx.body = { auth_req_ids: done, ping_errors: pingErrors };
}

async function testAPI(ctx) {
  ctx.set('cache-control', 'no-store');
  const route = `${ctx.method} ${ctx.path}`;
  switch (route) {
    case 'GET /__test/counts':
      ctx.body = counts;
      return;
    case 'POST /__test/counts/reset':
      counts = newCounts();
      ctx.status = 204;
      return;
    case 'GET /__test/ciba/pending':
      ctx.body = { pending: pendingRequests() };
      return;
    case 'POST /__test/ciba/approve':
      await resolveCIBA(ctx, true);
      return;
    case 'POST /__test/ciba/deny':
      await resolveCIBA(ctx, false);
      return;
    default:
      ctx.status = 404;
      ctx.body = { error: `no test route ${route}` };
  }
}

// ---------------------------------------------------------------------------

const server = provider.listen(cfg.port, '127.0.0.1', () => {
  process.stdout.write(`ready ${cfg.issuer}\n`);
});
server.on('error', (err) => {
  process.stderr.write(`listen: ${err.message}\n`);
  process.exit(1);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close();
    server.closeAllConnections();
    process.exit(0);
  });
}
