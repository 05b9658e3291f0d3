// Issue #20 §3, errors that name the cause, through the built CLI as an operator meets them:
//   - a port clash names the flag that changes it (`atrest serve --secure-port`, `--bind-address`,
//     the plugin's `--health-listen`);
//   - a KMS failure names the provider, its plugin endpoint and "plugin unreachable" when no plugin
//     answers: a kms v1 write while the plugin is down (the client's 500, /readyz, the log), and an
//     automatic reload to a configuration whose kms v2 plugin is not there (the log).
// The split "plugin unreachable" / "the plugin answered with an error" and the kms v2 write after the
// DEK seed expired are asserted against a real plugin in test/kms/python-plugin.test.ts.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { RunningApiServer } from '../../src/api/index.js';
import { runCli } from '../helpers/cli.js';
import { waitFor } from '../helpers/plugin.js';
import { apiRequest, serveClient } from '../helpers/server.js';
import { ServeProcess } from '../helpers/task-page.js';
import { report } from './load.js';

let dir = '';
const figures: Record<string, string> = {};
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'atrest-name-cause-'));
});
after(() => {
  report('errors-name-cause', figures);
  rmSync(dir, { recursive: true, force: true });
});

/** A TCP port held by a listener of this test. */
async function heldPort(): Promise<{ port: number; server: Server }> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { port: (server.address() as { port: number }).port, server };
}

const lastLine = (s: string): string => s.trim().split('\n').pop() ?? '';

function clientOf(serve: ServeProcess, dataDir: string): RunningApiServer {
  return serveClient(serve.url, dataDir);
}

function kmsConfig(apiVersion: 'v1' | 'v2', name: string, endpoint: string): string {
  return `apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
      - kms:
          apiVersion: ${apiVersion}
          name: ${name}
          endpoint: ${endpoint}
          timeout: 1s
      - identity: {}
`;
}

const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

test('a port clash names the flag that changes it: serve --secure-port, plugin --health-listen', { timeout: 60_000 }, async () => {
  const held = await heldPort();
  try {
    const serve = await runCli(['serve', '--data-dir', join(dir, 'clash'), '--secure-port', String(held.port)]);
    assert.notEqual(serve.code, 0);
    assert.match(serve.stderr, new RegExp(`^atrest: cannot listen on 127\\.0\\.0\\.1:${held.port}: the port is already in use \\(EADDRINUSE\\), by another atrest or another program; stop that process, or choose another port with --secure-port$`, 'm'));
    figures['serve'] = lastLine(serve.stderr);

    const keyFile = join(dir, 'kek.json');
    assert.equal((await runCli(['kms-plugin', 'init-key', '--backend', 'local', '--key-file', keyFile])).code, 0);
    const plugin = await runCli(['kms-plugin', '--backend', 'local', '--key-file', keyFile, '--listen', `unix://${join(dir, 'p.sock')}`, '--health-listen', `127.0.0.1:${held.port}`]);
    assert.notEqual(plugin.code, 0);
    assert.match(plugin.stderr, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${held.port}: the port is already in use \\(EADDRINUSE\\).*choose another port with --health-listen`));
    figures['plugin'] = lastLine(plugin.stderr);

    const bind = await runCli(['serve', '--data-dir', join(dir, 'clash'), '--secure-port', '0', '--bind-address', '192.0.2.1']);
    assert.notEqual(bind.code, 0);
    assert.match(bind.stderr, /^atrest: cannot listen on 192\.0\.2\.1:0: no network interface of this machine has that address \(EADDRNOTAVAIL\); give one it has with --bind-address$/m);
  } finally {
    held.server.close();
  }
});

test('a kms v1 write with the plugin down: the 500, /readyz and the log name the provider, its endpoint and "plugin unreachable"', { timeout: 60_000 }, async () => {
  const endpoint = `unix://${join(dir, 'nobody-listens.sock')}`;
  const config = join(dir, 'v1-down.yaml');
  writeFileSync(config, kmsConfig('v1', 'down', endpoint));
  const dataDir = join(dir, 'v1-down');
  const serve = await ServeProcess.start(['--data-dir', dataDir, '--encryption-provider-config', config]);
  try {
    const server = clientOf(serve, dataDir);
    const r = await apiRequest(server, 'POST', '/api/v1/namespaces/default/secrets', { body: JSON.stringify({ metadata: { name: 's' }, data: { v: 'dmFsdWU=' } }) });
    assert.equal(r.status, 500, r.text);
    const named = `kms v1 provider "down" \\(plugin ${escape(endpoint)}\\)`;
    assert.match(r.json<{ message: string }>().message, new RegExp(`^Internal error occurred: failed to encrypt the value for /registry/secrets/default/s: ${named} cannot encrypt: plugin unreachable: (failed get version from remote KMS provider: )?rpc error: code = DeadlineExceeded`));
    figures['write'] = r.json<{ message: string }>().message;
    const ready = await apiRequest(server, 'GET', '/readyz?verbose', { token: null });
    assert.equal(ready.status, 500);
    assert.match(ready.text, /^\[-\]kms-provider-0 failed: reason withheld$/m);
    // In the JSON log line the provider's quotes are escaped.
    const namedInLog = `kms v1 provider \\\\"down\\\\" \\(plugin ${escape(endpoint)}\\)`;
    await waitFor('the health check failure in the log', () => new RegExp(`"check":"kms-provider-0","err":"${namedInLog}: plugin unreachable: failed to perform encrypt section of the healthz check for KMS Provider down`).test(serve.log()), 10_000);
    assert.equal((await apiRequest(server, 'GET', '/api/v1/namespaces/default/secrets/s')).status, 404, 'nothing stored');
  } finally {
    await serve.stop();
  }
});

test('an automatic reload to a kms v2 plugin that is not there is refused naming the provider, its endpoint and "plugin unreachable"', { timeout: 60_000 }, async () => {
  const config = join(dir, 'reload.yaml');
  writeFileSync(config, 'apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - identity: {}\n');
  const dataDir = join(dir, 'reload');
  const serve = await ServeProcess.start(['--data-dir', dataDir, '--encryption-provider-config', config,
    '--encryption-provider-config-automatic-reload', '--encryption-provider-config-reload-interval', '100']);
  try {
    const endpoint = `unix://${join(dir, 'reload-missing.sock')}`;
    writeFileSync(config, kmsConfig('v2', 'reload-down', endpoint));
    const pattern = new RegExp(`"err":"the new KMS providers are not healthy: kms-provider(s|-0): kms v2 provider \\\\"reload-down\\\\" \\(plugin ${escape(endpoint)}\\): plugin unreachable: failed to perform status section of the healthz check for KMS Provider reload-down[^"]*","msg":"keeping the current encryption provider configuration`);
    await waitFor('the refused reload in the log', () => pattern.test(serve.log()), 30_000).catch((err: unknown) => {
      throw new Error(`${String(err)}\n${serve.log()}`);
    });
    const line = serve.log().split('\n').find((l) => l.includes('keeping the current encryption provider configuration')) ?? '{}';
    figures['reload'] = (JSON.parse(line) as { err?: string }).err ?? '';
    // The old configuration stays: writes work (identity).
    const server = clientOf(serve, dataDir);
    const r = await apiRequest(server, 'POST', '/api/v1/namespaces/default/secrets', { body: JSON.stringify({ metadata: { name: 'kept' }, data: { v: 'dmFsdWU=' } }) });
    assert.equal(r.status, 201, r.text);
  } finally {
    await serve.stop();
  }
});
