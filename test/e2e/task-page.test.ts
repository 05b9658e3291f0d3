// The Kubernetes task page "Using a KMS provider for data encryption", end to end, with the real
// kubectl, a real etcd read by the real etcdctl | hexdump -C, and the built CLI's `atrest kms-plugin`
// and `atrest serve`. Each flow walks the whole page: secrets created before encryption; the page's
// configuration; secret1 with mykey=mydata, its `k8s:enc:kms:…:myKmsPlugin:` prefix in etcd and
// `kubectl describe`; `kubectl get secrets --all-namespaces -o json | kubectl replace -f -`
// re-encrypting the old secrets; disabling (identity first) leaving only plaintext; and switching
// from aescbc to kms leaving no aescbc value. `atrest verify -o json` confirms every step. Flows:
// kms v1 with the page's legacy `kind: EncryptionConfig` files, `--experimental-encryption-provider-config`
// and the page's etcd path /kubernetes.io (its first two files as printed must be refused: invalid
// YAML, a placeholder key; the repaired ones are used); kms v2 (EncryptionConfiguration) on the default
// /registry; and kms v2 with `--encryption-provider-config-automatic-reload`, the file edited in place
// instead of restarting. One etcd and one plugin serve all three; each has its own key prefix.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import { etcdAvailable, startEtcdCluster, type EtcdCluster } from '../helpers/etcd.js';
import { runCli, type CliResult } from '../helpers/cli.js';
import { Kubectl, kubectlAvailable } from '../helpers/kubectl.js';
import { waitFor } from '../helpers/plugin.js';
import {
  atrestVerify, etcdctlGetHexdump, etcdctlValues, KmsPluginProcess, pageConfigs, replaceAllSecrets, ServeProcess,
  type PageConfigs, type VerifyResult,
} from '../helpers/task-page.js';

interface FlowSpec {
  kms: 'v1' | 'v2';
  /** `--etcd-prefix`; undefined: the default /registry. */
  etcdPrefix?: string;
  configFlag: '--experimental-encryption-provider-config' | '--encryption-provider-config';
  /** How a changed file takes effect: the page's restart, or automatic reload. */
  apply: 'restart' | 'reload';
}

const PLAIN_JSON = '{"kind":"Secret"';
/** The secrets of every flow: name, namespace, key, value (values never appear in ciphertext). */
const SECRETS = [
  { name: 'pre-a', ns: 'default', key: 'k', value: 'alpha-plaintext-7c1' },
  { name: 'pre-b', ns: 'team-a', key: 'k', value: 'beta-plaintext-9d4' },
  { name: 'secret1', ns: 'default', key: 'mykey', value: 'mydata' },
] as const;

class Flow {
  readonly dir = mkdtempSync(join(tmpdir(), 'atrest-task-page-'));
  readonly configPath = join(this.dir, 'encryption-config.yaml');
  readonly prefix: string;
  readonly configs: PageConfigs;
  readonly kmsPrefix: string;
  readonly kmsWriter: string;
  serve: ServeProcess | undefined;
  kubectl: Kubectl | undefined;
  /** Set when a step fails: the later steps depend on it and are skipped. */
  broken = false;

  constructor(readonly spec: FlowSpec, readonly endpoint: string, pluginEndpoint: string) {
    this.prefix = spec.etcdPrefix ?? '/registry';
    this.configs = pageConfigs(spec.kms, pluginEndpoint);
    this.kmsPrefix = `k8s:enc:kms:${spec.kms}:myKmsPlugin:`;
    this.kmsWriter = `kms ${spec.kms}:myKmsPlugin`;
  }

  private serveArgs(withConfig: boolean): string[] {
    const args = ['--etcd-servers', this.endpoint, '--data-dir', join(this.dir, 'data')];
    if (this.spec.etcdPrefix) args.push('--etcd-prefix', this.spec.etcdPrefix);
    if (withConfig) args.push(this.spec.configFlag, this.configPath);
    if (this.spec.apply === 'reload') args.push('--encryption-provider-config-automatic-reload', '--encryption-provider-config-reload-interval', '100');
    return args;
  }

  /** The state before encryption: no configuration (restart flows) or an identity-only one (reload needs a file). */
  async startBeforeEncryption(): Promise<void> {
    writeFileSync(this.configPath, this.configs.before);
    this.serve = await ServeProcess.start(this.serveArgs(this.spec.apply === 'reload'));
    this.kubectl = new Kubectl(this.serve.kubeconfig);
  }

  /** `atrest serve` with `text` as its configuration, in a scratch data dir: for files it must refuse. */
  serveOnce(text: string): Promise<CliResult> {
    const path = join(this.dir, 'as-printed.yaml');
    writeFileSync(path, text);
    const args = ['serve', '--secure-port', '0', '--etcd-servers', this.endpoint, '--data-dir', join(this.dir, 'scratch'), this.spec.configFlag, path];
    if (this.spec.etcdPrefix) args.push('--etcd-prefix', this.spec.etcdPrefix);
    return runCli(args);
  }

  /** Writes the configuration file, then restarts `atrest serve` (the page) or waits for the reload. */
  async applyConfig(text: string): Promise<void> {
    const serve = this.serve as ServeProcess;
    if (this.spec.apply === 'restart') {
      writeFileSync(this.configPath, text);
      assert.equal(await serve.stop(), 0, `atrest serve stops cleanly:\n${serve.log()}`);
      this.serve = await ServeProcess.start(this.serveArgs(true));
      return;
    }
    const before = await this.reloads();
    writeFileSync(this.configPath, text); // in place: the same path, new content
    await waitFor('the automatic reload of the edited configuration', async () => (await this.reloads()) > before, 60_000, 100);
    assert.equal(this.serve?.pid, serve.pid, 'the same server process, not restarted');
  }

  /** apiserver_encryption_config_controller_automatic_reloads_total{status="success"} from /metrics. */
  private async reloads(): Promise<number> {
    const metrics = await this.k.ok(['get', '--raw', '/metrics']);
    const m = /apiserver_encryption_config_controller_automatic_reloads_total\{status="success"\} (\d+)/.exec(metrics);
    return m ? Number(m[1]) : 0;
  }

  get k(): Kubectl {
    return this.kubectl as Kubectl;
  }

  replaceAll(): Promise<string> {
    return replaceAllSecrets(this.serve?.kubeconfig as string, join(this.dir, 'home'));
  }

  verify(): Promise<VerifyResult> {
    return atrestVerify(this.configPath, this.endpoint, this.prefix);
  }

  /** Raw values of every secret of this flow, read with etcdctl. */
  async rawSecrets(): Promise<Map<string, Buffer>> {
    return etcdctlValues(this.endpoint, `${this.prefix}/secrets/`);
  }

  async assertEveryValue(count: number, startsWith: string, what: string): Promise<Map<string, Buffer>> {
    const raw = await this.rawSecrets();
    assert.equal(raw.size, count, `${count} secrets under ${this.prefix}/secrets/`);
    for (const [key, value] of raw) {
      assert.equal(value.subarray(0, startsWith.length).toString('latin1'), startsWith, `${key}: ${what}`);
      if (startsWith !== PLAIN_JSON) {
        for (const s of SECRETS) {
          assert.ok(!value.includes(Buffer.from(s.value)) && !value.includes(Buffer.from(Buffer.from(s.value).toString('base64'))), `${key}: no plaintext of ${s.name}`);
        }
      }
    }
    return raw;
  }

  async assertReadable(): Promise<void> {
    for (const s of SECRETS) {
      const b64 = await this.k.ok(['get', 'secret', s.name, '-n', s.ns, '-o', `jsonpath={.data.${s.key}}`]);
      assert.equal(Buffer.from(b64, 'base64').toString(), s.value, `${s.ns}/${s.name} reads back through the API`);
    }
  }

  async close(): Promise<void> {
    this.kubectl?.cleanup();
    if (this.serve) assert.equal(await this.serve.stop(), 0, `atrest serve stops cleanly:\n${this.serve.log()}`);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function assertVerify(r: VerifyResult, expected: { code: number; writers: Record<string, number>; stale: number; plaintext: number }, step: string): void {
  assert.deepEqual(
    { code: r.code, ok: r.ok, writers: r.writers, stale: r.secrets.stale, plaintext: r.secrets.plaintext, undecryptable: r.secrets.undecryptable.length },
    { code: expected.code, ok: expected.code === 0, writers: expected.writers, stale: expected.stale, plaintext: expected.plaintext, undecryptable: 0 },
    `atrest verify after: ${step}`,
  );
}

/** Runs `fn` as a subtest, skipped once an earlier step of the flow failed. */
async function step(t: TestContext, flow: Flow, name: string, fn: () => Promise<void>): Promise<void> {
  await t.test(name, { skip: flow.broken && 'an earlier step failed' }, async () => {
    try {
      await fn();
    } catch (err) {
      flow.broken = true;
      throw err;
    }
  });
}

async function walkThePage(t: TestContext, flow: Flow): Promise<void> {
  const kms = flow.kmsWriter;
  await step(t, flow, 'secrets created before encryption are stored in plaintext', async () => {
    await flow.startBeforeEncryption();
    await flow.k.ok(['create', 'namespace', 'team-a']);
    for (const s of SECRETS.slice(0, 2)) await flow.k.ok(['create', 'secret', 'generic', s.name, '-n', s.ns, `--from-literal=${s.key}=${s.value}`]);
    await flow.assertEveryValue(2, PLAIN_JSON, 'plaintext before encryption');
    assertVerify(await flow.verify(), { code: 0, writers: { identity: 2 }, stale: 0, plaintext: 2 }, 'before encryption (identity is current)');
  });

  const asPrinted = flow.configs.asPrinted;
  if (asPrinted) {
    await step(t, flow, 'the page\'s first two files as printed are refused with kube-apiserver\'s messages', async () => {
      const refused = async (text: string, message: string) => {
        const r = await flow.serveOnce(text);
        assert.equal(r.code, 1, `atrest serve refuses the file:\n${r.stderr}`);
        assert.ok(r.stderr.includes(message), r.stderr);
      };
      await refused(asPrinted.encrypting, 'yaml: line 10: did not find expected \'-\' indicator');
      await refused(asPrinted.switching, 'resources[0].providers[1].aescbc.keys[0].secret: Invalid value: "REDACTED": secrets must be base64 encoded');
    });
  }

  await step(t, flow, 'the kms configuration: secret1 is k8s:enc:kms in etcd and mykey in kubectl describe', async () => {
    await flow.applyConfig(flow.configs.enable);
    await flow.k.ok(['create', 'secret', 'generic', 'secret1', '-n', 'default', '--from-literal=mykey=mydata']);
    const { dump, value } = await etcdctlGetHexdump(flow.endpoint, `${flow.prefix}/secrets/default/secret1`);
    assert.equal(value.subarray(0, flow.kmsPrefix.length).toString('latin1'), flow.kmsPrefix, `the stored secret starts with ${flow.kmsPrefix}:\n${dump}`);
    assert.ok(!value.includes(Buffer.from('mydata')) && !value.includes(Buffer.from('bXlkYXRh')), 'no plaintext in etcd');
    assert.match(await flow.k.ok(['describe', 'secret', 'secret1', '-n', 'default']), /^mykey:\s+6 bytes$/m);
    const b64 = await flow.k.ok(['get', 'secret', 'secret1', '-n', 'default', '-o', 'jsonpath={.data.mykey}']);
    assert.equal(Buffer.from(b64, 'base64').toString(), 'mydata');
    assertVerify(await flow.verify(), { code: 1, writers: { [kms]: 1, identity: 2 }, stale: 2, plaintext: 2 }, 'kms enabled, old secrets not rewritten yet');
  });

  await step(t, flow, 'kubectl get secrets --all-namespaces -o json | kubectl replace -f - encrypts the old secrets', async () => {
    const out = await flow.replaceAll();
    for (const s of SECRETS) assert.match(out, new RegExp(`secret/${s.name} replaced`));
    await flow.assertEveryValue(3, flow.kmsPrefix, 'encrypted by kms');
    assertVerify(await flow.verify(), { code: 0, writers: { [kms]: 3 }, stale: 0, plaintext: 0 }, 'the re-encryption');
    await flow.assertReadable();
  });

  await step(t, flow, 'disabling: identity first, then the pipeline leaves only plaintext', async () => {
    await flow.applyConfig(flow.configs.disable);
    assertVerify(await flow.verify(), { code: 1, writers: { [kms]: 3 }, stale: 3, plaintext: 0 }, 'identity first, before the rewrite');
    await flow.replaceAll();
    const raw = await flow.assertEveryValue(3, PLAIN_JSON, 'plaintext after disabling');
    assert.ok(raw.get(`${flow.prefix}/secrets/default/secret1`)?.includes('"mykey":"bXlkYXRh"'), 'secret1 in plaintext JSON');
    assertVerify(await flow.verify(), { code: 0, writers: { identity: 3 }, stale: 0, plaintext: 3 }, 'the decryption');
  });

  await step(t, flow, 'a local provider (aescbc) encrypts everything', async () => {
    await flow.applyConfig(flow.configs.aescbc);
    await flow.replaceAll();
    await flow.assertEveryValue(3, 'k8s:enc:aescbc:v1:key1:', 'encrypted by aescbc');
    assertVerify(await flow.verify(), { code: 0, writers: { 'aescbc:key1': 3 }, stale: 0, plaintext: 0 }, 'aescbc');
  });

  await step(t, flow, 'switching from aescbc to kms: kms first, then the pipeline leaves no aescbc value', async () => {
    await flow.applyConfig(flow.configs.switchToKms);
    assertVerify(await flow.verify(), { code: 1, writers: { 'aescbc:key1': 3 }, stale: 3, plaintext: 0 }, 'kms first, before the rewrite');
    await flow.replaceAll();
    const raw = await flow.assertEveryValue(3, flow.kmsPrefix, 'encrypted by kms');
    for (const [key, value] of raw) assert.ok(!value.subarray(0, 16).toString('latin1').startsWith('k8s:enc:aescbc:'), `${key} is no longer aescbc`);
    assertVerify(await flow.verify(), { code: 0, writers: { [kms]: 3 }, stale: 0, plaintext: 0 }, 'the switch to kms');
    await flow.assertReadable();
  });
}

const FLOWS: Array<{ title: string; spec: FlowSpec }> = [
  {
    title: 'kms v1, the page\'s legacy EncryptionConfig files, --experimental-encryption-provider-config, --etcd-prefix /kubernetes.io, restarts',
    spec: { kms: 'v1', etcdPrefix: '/kubernetes.io', configFlag: '--experimental-encryption-provider-config', apply: 'restart' },
  },
  {
    title: 'kms v2 (EncryptionConfiguration), the default /registry prefix, restarts',
    spec: { kms: 'v2', configFlag: '--encryption-provider-config', apply: 'restart' },
  },
  {
    title: 'kms v2 with --encryption-provider-config-automatic-reload: the file edited in place, no restart',
    spec: { kms: 'v2', etcdPrefix: '/atrest-reload', configFlag: '--encryption-provider-config', apply: 'reload' },
  },
];

describe('the KMS task page end to end (kubectl, etcd + etcdctl, atrest kms-plugin, atrest serve, atrest verify)', {
  skip: (!kubectlAvailable() || !etcdAvailable()) && 'needs kubectl and etcd',
  concurrency: FLOWS.length,
}, () => {
  let dir: string;
  let etcd: EtcdCluster;
  let plugin: KmsPluginProcess;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'atrest-task-page-kms-'));
    [etcd, plugin] = await Promise.all([startEtcdCluster(1), KmsPluginProcess.start(dir)]);
  });

  after(async () => {
    if (plugin) assert.equal(await plugin.stop(), 0, `the kms plugin stops cleanly:\n${plugin.log()}`);
    await etcd?.cleanup();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  for (const { title, spec } of FLOWS) {
    test(title, async (t) => {
      const flow = new Flow(spec, etcd.endpoints[0] as string, plugin.endpoint);
      try {
        await walkThePage(t, flow);
      } finally {
        await flow.close();
      }
    });
  }
});
