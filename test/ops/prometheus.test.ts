// Issue #15, end to end against the real tools: Prometheus (Debian's 2.42) scrapes `atrest
// kms-plugin --health-listen`, `atrest serve` /metrics (HTTPS, bearer token) and node_exporter's
// textfile collector fed by `atrest verify --textfile`; real kubectl makes the traffic. The series
// must have the values the traffic implies, the alert rules must load and evaluate, and every query
// of the Grafana dashboard must parse and return data.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { freePort } from '../helpers/etcd.js';
import { Kubectl, kubectlAvailable } from '../helpers/kubectl.js';
import { cliSource, makeTempDir, PluginProcess, repoRoot, runAtrest, TestKmsClient, waitFor } from '../helpers/plugin.js';
import { writeKmsV2Config } from '../helpers/server.js';
import { captureLog, registerTestSecret } from '../helpers/test-log.js';

const PROMETHEUS = '/usr/bin/prometheus';
const NODE_EXPORTER = '/usr/bin/prometheus-node-exporter';
const missing = [PROMETHEUS, NODE_EXPORTER].filter((f) => !existsSync(f));
const skip = (missing.length > 0 || !kubectlAvailable()) && process.env['CI'] !== 'true'
  ? `not installed: ${[...missing, ...(kubectlAvailable() ? [] : ['kubectl'])].join(', ')} (scripts/install-test-deps.sh)` : false;

const SECRETS = 5;
const CONFIGMAPS = 2;


/** A long-running child; stop() sends SIGTERM (SIGKILL after 10 s). */
function start(label: string, cmd: string, args: string[], capture = true): { child: ChildProcess; stderr: () => string; stop: () => Promise<void> } {
  const child = spawn(cmd, args, { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-20_000); });
  if (capture) captureLog(label, child.stderr!);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    child,
    stderr: () => stderr,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(t);
    },
  };
}

interface Sample { metric: Record<string, string>; value: [number, string] }

async function promQuery(port: number, query: string): Promise<Sample[]> {
  const res = await fetch(`http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent(query)}`);
  const body = await res.json() as { status: string; error?: string; data?: { resultType: string; result: Sample[] | [number, string] } };
  if (body.status !== 'success') throw new Error(`query ${query}: ${body.error ?? res.status}`);
  const r = body.data!.result;
  // A scalar result (e.g. `time() - ...` folded) comes as one [t, v] pair.
  return body.data!.resultType === 'scalar' ? [{ metric: {}, value: r as [number, string] }] : r as Sample[];
}

/** Waits until `query` returns exactly one sample with value `expected`. */
async function expectValue(port: number, query: string, expected: number): Promise<void> {
  let last: Sample[] = [];
  try {
    await waitFor(`${query} == ${expected}`, async () => {
      last = await promQuery(port, query);
      return last.length === 1 && Number(last[0]!.value[1]) === expected;
    }, 30_000, 250);
  } catch {
    assert.fail(`${query}: expected ${expected}, Prometheus has ${JSON.stringify(last.map((s) => [s.metric, s.value[1]]))}`);
  }
}

function dashboardQueries(): Array<{ panel: string; expr: string }> {
  const dash = JSON.parse(readFileSync(join(repoRoot, 'deploy/grafana/atrest.json'), 'utf8')) as { panels: Array<{ title: string; targets?: Array<{ expr: string }> }> };
  return dash.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr })));
}

test('Prometheus scrapes the plugin, the API server and verify\'s textfile; series, rules and dashboard queries match the traffic', { skip, timeout: 240_000 }, async () => {
  const { dir, cleanup } = await makeTempDir('atrest-prom-');
  const stops: Array<() => Promise<void>> = [];
  try {
    const keyFile = join(dir, 'kek.json');
    assert.equal((await runAtrest(['kms-plugin', 'init-key', '--key-file', keyFile])).code, 0);
    const kek = JSON.parse(readFileSync(keyFile, 'utf8')) as { versions: Array<{ version: number; id: string; created: string }> };
    const keyId = `local:v${kek.versions[0]!.version}:${kek.versions[0]!.id}`;

    // The plugin with its health/metrics listener.
    const socket = join(dir, 'kms.sock');
    const pluginPort = await freePort();
    const plugin = new PluginProcess(['--listen', `unix://${socket}`, '--key-file', keyFile, '--health-listen', `127.0.0.1:${pluginPort}`]);
    stops.push(async () => { await plugin.stop(); });
    await plugin.waitForEvent('start');

    // atrest serve: secrets with kms v2 (then identity), configmaps unencrypted.
    const config = writeKmsV2Config(dir, socket);
    const dataDir = join(dir, 'data');
    const serveStartedAt = Date.now() / 1000;
    const serve = start('prom-serve', process.execPath, ['--import', 'tsx', cliSource, 'serve', '--secure-port', '0', '--data-dir', dataDir, '--encryption-provider-config', config]);
    stops.push(serve.stop);
    const info = await new Promise<{ port: number; kubeconfig: string }>((resolve, reject) => {
      createInterface({ input: serve.child.stdout! }).once('line', (l) => resolve(JSON.parse(l) as { port: number; kubeconfig: string }));
      serve.child.once('exit', (code) => reject(new Error(`serve exited ${code}: ${serve.stderr()}`)));
    });
    const token = readFileSync(join(dataDir, 'tokens.csv'), 'utf8').split(',')[0]!;
    registerTestSecret(token, 'apiserver-token');
    const tokenFile = join(dir, 'prometheus-token');
    writeFileSync(tokenFile, token, { mode: 0o600 });

    // Traffic: creates and reads through the real kubectl, and one bad Decrypt straight at the plugin.
    const k = new Kubectl(info.kubeconfig);
    try {
      for (let i = 0; i < SECRETS; i++) await k.ok(['create', 'secret', 'generic', `s${i}`, `--from-literal=k=value-${i}`]);
      for (let i = 0; i < CONFIGMAPS; i++) await k.ok(['create', 'configmap', `c${i}`, `--from-literal=k=v${i}`]);
      await k.ok(['get', 'secret', 's0', 's1', '-o', 'name']);
    } finally {
      k.cleanup();
    }
    const client = TestKmsClient.forPath(socket);
    await assert.rejects(client.decrypt(Buffer.from('not a ciphertext of this plugin'), keyId));
    client.close();

    // node_exporter with only the textfile collector, and Prometheus scraping all three.
    const textDir = join(dir, 'textfile');
    mkdirSync(textDir);
    const nodePort = await freePort();
    const node = start('prom-node-exporter', NODE_EXPORTER, [`--web.listen-address=127.0.0.1:${nodePort}`, '--collector.disable-defaults', '--collector.textfile', `--collector.textfile.directory=${textDir}`], false);
    stops.push(node.stop);
    const promPort = await freePort();
    const promConfig = join(dir, 'prometheus.yml');
    writeFileSync(promConfig, `global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - ${join(repoRoot, 'deploy/prometheus/atrest-rules.yaml')}
scrape_configs:
  - job_name: atrest-kms-plugin
    static_configs: [{ targets: ["127.0.0.1:${pluginPort}"] }]
  - job_name: atrest-apiserver
    scheme: https
    tls_config: { ca_file: "${join(dataDir, 'ca.crt')}" }
    authorization: { credentials_file: "${tokenFile}" }
    static_configs: [{ targets: ["127.0.0.1:${info.port}"] }]
  - job_name: atrest-verify
    static_configs: [{ targets: ["127.0.0.1:${nodePort}"] }]
`);
    const prom = start('prometheus', PROMETHEUS, [`--config.file=${promConfig}`, `--storage.tsdb.path=${join(dir, 'tsdb')}`,
      `--web.listen-address=127.0.0.1:${promPort}`, '--log.level=warn'], false);
    stops.push(prom.stop);
    await waitFor('Prometheus to answer', async () => (await fetch(`http://127.0.0.1:${promPort}/-/ready`)).ok || (prom.child.exitCode !== null && assert.fail(prom.stderr())), 30_000, 200);

    for (const job of ['atrest-kms-plugin', 'atrest-apiserver', 'atrest-verify']) await expectValue(promPort, `up{job="${job}"}`, 1);

    // The API server's kube-named series: one kms v2 write per secret created, one Encrypt (the DEK seed).
    await expectValue(promPort, 'sum(apiserver_storage_transformation_operations_total{job="atrest-apiserver", transformation_type="to_storage", transformer_prefix="k8s:enc:kms:v2:atrest:", status="OK"})', SECRETS);
    await expectValue(promPort, 'sum(apiserver_envelope_encryption_key_id_hash_total{transformation_type="to_storage", provider_name="atrest"})', SECRETS);
    await expectValue(promPort, `count(apiserver_envelope_encryption_key_id_hash_total{transformation_type="to_storage", key_id_hash="sha256:${createHash('sha256').update(keyId).digest('hex')}"})`, 1);
    await expectValue(promPort, 'sum(apiserver_storage_transformation_duration_seconds_count{transformation_type="to_storage", transformer_prefix="k8s:enc:kms:v2:atrest:"})', SECRETS);
    await expectValue(promPort, 'sum(apiserver_envelope_encryption_kms_operations_latency_seconds_count{provider_name="atrest", method_name="/v2.KeyManagementService/Encrypt", grpc_status_code="OK"})', 1);
    await expectValue(promPort, 'count(apiserver_envelope_encryption_kms_operations_latency_seconds_count{method_name=~".*/Status", grpc_status_code="OK"}) > 0', 1);
    // The plugin's own series agree: the one Encrypt it answered, the bad Decrypt, its key.
    await expectValue(promPort, 'sum(atrest_kms_plugin_operations_total{job="atrest-kms-plugin", api_version="v2", method="Encrypt", outcome="OK"})', 1);
    await expectValue(promPort, 'sum(atrest_kms_plugin_operations_total{api_version="v2", method="Decrypt", outcome="InvalidArgument"})', 1);
    await expectValue(promPort, `atrest_kms_plugin_current_key_id_hash_info{key_id_hash="sha256:${createHash('sha256').update(keyId).digest('hex')}"}`, 1);
    await expectValue(promPort, 'atrest_kms_plugin_current_key_created_timestamp_seconds', Date.parse(kek.versions[0]!.created) / 1000);
    const seed = await promQuery(promPort, 'atrest_envelope_encryption_dek_seed_created_timestamp_seconds{provider_name="atrest"}');
    assert.equal(seed.length, 1);
    assert.ok(Number(seed[0]!.value[1]) >= Math.floor(serveStartedAt) && Number(seed[0]!.value[1]) <= Date.now() / 1000, 'the seed was made after serve started');

    // verify --textfile, read by node_exporter: every secret current (kms v2), the configmaps plaintext.
    const verify = await runAtrest(['verify', '--encryption-provider-config', config, '--data-dir', dataDir, '--textfile', join(textDir, 'atrest_verify.prom')]);
    assert.equal(verify.code, 0, verify.stderr + verify.stdout);
    await expectValue(promPort, 'sum(atrest_verify_values{job="atrest-verify", resource="secrets", writer=~"kms v2:atrest:sha256:.+"})', SECRETS);
    await expectValue(promPort, 'atrest_verify_plaintext_values{resource="configmaps"}', CONFIGMAPS);
    await expectValue(promPort, 'sum(atrest_verify_stale_values) + sum(atrest_verify_undecryptable_values) + sum(atrest_verify_retired_key_values)', 0);
    await expectValue(promPort, 'atrest_verify_ok', 1);
    await expectValue(promPort, 'max(atrest_verify_check_complete) + sum(atrest_verify_unchecked_values)', 1);
    // verify's own engine asked the plugin for a DEK seed too.
    await expectValue(promPort, 'sum(atrest_kms_plugin_operations_total{api_version="v2", method="Encrypt", outcome="OK"})', 2);

    // The alert rules loaded and evaluate cleanly on the real series; none fires on a healthy system.
    const ruleCount = readFileSync(join(repoRoot, 'deploy/prometheus/atrest-rules.yaml'), 'utf8').split('\n').filter((l) => /^\s+- (alert|record): /.test(l)).length;
    await waitFor('every rule evaluated', async () => {
      const rules = await (await fetch(`http://127.0.0.1:${promPort}/api/v1/rules`)).json() as { data: { groups: Array<{ rules: Array<{ name: string; health: string; lastError?: string }> }> } };
      const all = rules.data.groups.flatMap((g) => g.rules);
      const bad = all.filter((r) => r.health !== 'ok');
      return all.length === ruleCount && bad.length === 0;
    }, 30_000, 250);
    assert.deepEqual(await promQuery(promPort, 'ALERTS'), []);

    // Every dashboard query parses and returns data against this scrape.
    const queries = dashboardQueries();
    assert.ok(queries.length >= 15, `${queries.length} dashboard queries`);
    for (const { panel, expr } of queries) {
      const q = expr.replaceAll('$__rate_interval', '30s');
      try {
        await waitFor(`data for "${panel}"`, async () => (await promQuery(promPort, q)).length > 0, 30_000, 250);
      } catch (err) {
        assert.fail(`dashboard panel "${panel}": ${q}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
  } finally {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
    await cleanup();
  }
});
