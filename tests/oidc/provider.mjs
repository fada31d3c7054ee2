// A real OpenID Connect provider (oidc-provider) for the single sign-on
// tests: plain http on 127.0.0.1, issuer `http://127.0.0.1:PORT`.
//
//   node tests/oidc/provider.mjs --port 0 --directory accounts.json
//   (or OIDC_PORT / OIDC_DIRECTORY in the environment)
//
// Prints `oidc-provider listening on http://127.0.0.1:PORT` once it answers.
// The directory file holds `{"accounts": {id: claims}, "clients": [metadata]}`
// and is read again at every lookup, so a test may change an account's groups
// (or register a client it only knows the address of later) between sign-ins.
// Sign-in is a form that takes an account id; consent is given at once.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

const { values: opts } = parseArgs({
  options: {
    port: { type: 'string', default: process.env.OIDC_PORT ?? '0' },
    directory: { type: 'string', default: process.env.OIDC_DIRECTORY },
  },
});
if (!opts.directory) {
  console.error('usage: provider.mjs --port PORT --directory accounts.json');
  process.exit(2);
}

async function directory() {
  const parsed = JSON.parse(await readFile(opts.directory, 'utf8'));
  return { accounts: parsed.accounts ?? {}, clients: parsed.clients ?? [] };
}

// oidc-provider's own memory adapter is not part of its public exports, so a
// small one: everything in one Map, expiry checked on read. Clients are the
// exception: they come from the directory file, read anew on every lookup.
const store = new Map();
const grants = new Map(); // grantId -> keys of the tokens it issued

class Adapter {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    const expires = expiresIn ? Date.now() + expiresIn * 1000 : Infinity;
    store.set(this.key(id), { payload, expires });
    if (this.model === 'Session') store.set(`uid:${payload.uid}`, { payload: id, expires });
    if (payload.userCode) store.set(`userCode:${payload.userCode}`, { payload: id, expires });
    if (payload.grantId) {
      if (!grants.has(payload.grantId)) grants.set(payload.grantId, new Set());
      grants.get(payload.grantId).add(this.key(id));
    }
  }

  async find(id) {
    if (this.model === 'Client') {
      return (await directory()).clients.find((c) => c.client_id === id);
    }
    return lookup(this.key(id));
  }

  async findByUid(uid) {
    const id = lookup(`uid:${uid}`);
    return id && this.find(id);
  }

  async findByUserCode(userCode) {
    const id = lookup(`userCode:${userCode}`);
    return id && this.find(id);
  }

  async consume(id) {
    const entry = lookup(this.key(id));
    if (entry) entry.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    store.delete(this.key(id));
  }

  async revokeByGrantId(grantId) {
    for (const key of grants.get(grantId) ?? []) store.delete(key);
    grants.delete(grantId);
  }
}

function lookup(key) {
  const entry = store.get(key);
  if (!entry) return undefined;
  if (entry.expires <= Date.now()) {
    store.delete(key);
    return undefined;
  }
  return entry.payload;
}

async function findAccount(_ctx, id) {
  const account = (await directory()).accounts[id];
  if (!account) return undefined;
  return {
    accountId: id,
    async claims() {
      return { ...account, sub: id };
    },
  };
}

// Listen first: the issuer names the port, and the port may be 0.
const server = createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(Number(opts.port), '127.0.0.1', resolve);
});
const issuer = `http://127.0.0.1:${server.address().port}`;

const signingKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });

const provider = new Provider(issuer, {
  adapter: Adapter,
  findAccount,
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
    groups: ['groups'],
  },
  scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
  // Put the scopes' claims in the ID token too, as most company providers
  // do: the gateway reads email and groups from it.
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  features: { devInteractions: { enabled: false } },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  jwks: { keys: [{ ...signingKey, use: 'sig', alg: 'RS256' }] },
  ttl: {
    AccessToken: 600,
    AuthorizationCode: 60,
    IdToken: 600,
    Interaction: 600,
    Session: 3600,
    Grant: 3600,
  },
  async renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = page('Error', `<p id="error">${escape(out.error)}: ${escape(out.error_description ?? '')}</p>`);
  },
});

function escape(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(title, body) {
  return `<!doctype html><html><head><title>${escape(title)}</title></head><body>${body}</body></html>`;
}

async function formBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function loginForm(res, uid, message) {
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
  res.end(page('Sign in', `${message ? `<p id="error">${escape(message)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}/login">
<label>Account <input name="login" autofocus></label>
<button type="submit">Sign in</button>
</form>`));
}

// The interaction pages oidc-provider sends the browser to.
async function interaction(req, res, uid, step) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) throw new Error('interaction mismatch');
  const { prompt, params, session } = details;

  if (prompt.name === 'login') {
    if (step !== 'login' || req.method !== 'POST') return loginForm(res, uid);
    const login = (await formBody(req)).get('login') ?? '';
    if (!(await directory()).accounts[login]) return loginForm(res, uid, 'unknown account');
    return provider.interactionFinished(req, res, { login: { accountId: login } }, { mergeWithLastSubmission: false });
  }

  // Consent: grant whatever the client asked for, at once.
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  const missing = prompt.details;
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const grantId = await grant.save();
  return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

const oidc = provider.callback();
server.on('request', async (req, res) => {
  const match = /^\/interaction\/([\w-]+)(?:\/(login))?$/.exec(new URL(req.url, issuer).pathname);
  if (!match) return oidc(req, res);
  try {
    await interaction(req, res, match[1], match[2]);
  } catch (err) {
    res.writeHead(400, { 'content-type': 'text/html; charset=utf-8' });
    res.end(page('Error', `<p id="error">${escape(err.message)}</p>`));
  }
});

console.log(`oidc-provider listening on ${issuer}`);

// Nothing to flush: everything lives in memory.
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));
