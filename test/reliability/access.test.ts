// Issue #8 §6, access: no API path answers without a valid bearer token except the ones
// kube-apiserver leaves to system:anonymous via system:public-info-viewer (/healthz, /livez,
// /readyz and their checks, /version); every route the router knows is walked with every verb, no
// token and a bad token → 401 Status. TLS only: a plain-HTTP request to the port is not served
// (400 from node's TLS server, no API data). The files `atrest serve` generates that hold secrets
// (token file, private keys, kubeconfig) are 0600.
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { test } from 'node:test';
import { apiRequest, startTestServer } from '../helpers/server.js';

// One path per Route kind of src/api/router.ts (plus variations), and unknown paths.
const PROTECTED = [
  '/', '/api', '/api/v1', '/apis', '/metrics', '/openapi/v2', '/openapi/v3',
  '/api/v1/namespaces', '/api/v1/namespaces/default', '/api/v1/namespaces/default/secrets', '/api/v1/namespaces/default/secrets/s1',
  '/api/v1/namespaces/default/configmaps', '/api/v1/namespaces/default/configmaps/c1', '/api/v1/secrets', '/api/v1/configmaps',
  '/api/v1/namespaces/default/events', '/api/v1/events', '/api/v1/namespaces/default/resourcequotas', '/api/v1/namespaces/default/limitranges',
  '/api/v1/secrets?watch=true', '/api/v1/namespaces/default/secrets?watch=1&timeoutSeconds=1',
  '/api/v2', '/apis/apps/v1', '/nope', '/healthz/../api/v1/secrets', '/%2e%2e/api/v1/secrets', '/version/extra', '/healthz/a/b',
];
const PUBLIC = ['/healthz', '/livez', '/readyz', '/version', '/healthz/ping', '/livez/ping', '/readyz/ping'];
const VERBS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'];

test('only /healthz, /livez, /readyz (and their checks) and /version are open; everything else is 401; TLS only; secret files 0600', { timeout: 60_000 }, async () => {
  const ts = await startTestServer();
  const s = ts.server;
  try {
    let requests = 0;
    let unauthorized = 0;
    const leaks: string[] = [];
    for (const path of PROTECTED) {
      for (const verb of VERBS) {
        for (const token of [null, 'bad-token', `${s.token}x`, '']) {
          requests++;
          const headers: Record<string, string> = token === '' ? { Authorization: 'Basic YWRtaW46YWRtaW4=' } : {};
          const r = await apiRequest(s, verb, path, { token: token === '' ? null : token, headers, ...(verb === 'POST' || verb === 'PUT' || verb === 'PATCH' ? { body: '{}' } : {}) });
          if (r.status === 401) unauthorized++;
          else leaks.push(`${verb} ${path} token=${token === null ? 'none' : 'bad'}: ${r.status}`);
          if (verb !== 'HEAD' && r.status === 401) assert.equal(r.json()['reason'], 'Unauthorized');
        }
      }
    }
    let publicOk = 0;
    for (const path of PUBLIC) {
      const r = await apiRequest(s, 'GET', path, { token: null });
      if (r.status === 200) publicOk++;
      else leaks.push(`public ${path}: ${r.status}`);
    }
    // With the right token the protected paths are served (the walk above is not 401 for every reason).
    assert.equal((await apiRequest(s, 'GET', '/api/v1/namespaces/default/secrets')).status, 200);

    // Plain HTTP to the TLS port.
    const port = Number(new URL(s.url).port);
    const plain = await new Promise<{ status: number; body: string } | { error: string }>((resolve) => {
      const r = httpRequest({ host: '127.0.0.1', port, path: '/api/v1/secrets', headers: { Authorization: `Bearer ${s.token}` } }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => { body += c.toString(); });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      r.on('error', (e) => resolve({ error: e.message }));
      r.end();
    });
    const plainServed = 'status' in plain && plain.status < 400;
    assert.ok(!plainServed, `plain HTTP was served: ${JSON.stringify(plain)}`);
    if ('body' in plain) assert.doesNotMatch(plain.body, /SecretList|"kind"/);

    // Files holding secrets in the generated data dir.
    const modes: Record<string, string> = {};
    for (const f of ['tokens.csv', 'admin.kubeconfig', 'pki/ca.key', 'pki/serving.key', 'ca.key', 'serving.key']) {
      try { modes[f] = (statSync(join(ts.dataDir, f)).mode & 0o777).toString(8); } catch { /* not generated under this name */ }
    }
    console.log(`RELIABILITY ${JSON.stringify({ section: 'access', requestsWithoutValidToken: requests, unauthorized, publicPaths: PUBLIC.length, publicOk, plainHttp: 'status' in plain ? plain.status : 'connection error', secretFileModes: modes })}`);
    assert.deepEqual(leaks, []);
    assert.ok(Object.keys(modes).length >= 4, `found ${JSON.stringify(modes)}`);
    for (const [f, m] of Object.entries(modes)) assert.equal(m, '600', f);
  } finally {
    await ts.close();
  }
});
