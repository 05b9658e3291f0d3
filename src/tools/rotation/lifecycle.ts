// `atrest rotate`: the whole KEK rotation, safe to run again at any point. Its state is what the
// backend and the store show, nothing kept on the side:
//   1 rotate-kek  a new KEK version, unless one is in progress (an earlier version is still active:
//                 the previous run stopped, or the plugin rotated on its schedule) — then finish that
//   2 wait        the plugins (through the configuration's sockets) and every API server report the
//                 new key_id (api-servers.ts)
//   3 migrate     a StorageVersionMigration per resource that has values under an old key_id, each
//                 waited to Succeeded (migrations.ts), or `atrest rewrite`'s engine with
//                 --migrate-with rewrite
//   4 verify      no stored value of any resource the configuration names (not only --resources)
//                 is under an old key_id (verifyStore, key-usage.ts)
//   5 retire      every old version, only after step 4 found nothing (run on its own, it verifies
//                 first)
// A rerun finds the old versions still active and continues; migrations it created are found by
// name. Each failure is a RotateError saying what to do.
import { keyIdHash } from '../../transform/kmsv2/validation.js';
import type { KubeClient } from '../kube-client.js';
import type { RewriteProgress, RewriteSummary } from '../rewrite.js';
import type { VerifyReport } from '../verify.js';
import { waitForServers } from './api-servers.js';
import { keyUsage, oldKeySampler, perResource, type KeyUsage } from './key-usage.js';
import { migrationName, runMigration, svmGroupVersion } from './migrations.js';
import { pollUntil, RotateError, STEPS, type KeyVersionView, type RotateReporter, type RotationBackend, type StepName } from './types.js';

/** A write provider of a selected resource, as the tool's own engine sees it over the plugin socket. */
export interface WriteProvider {
  resource: string;
  name: string;
  apiVersion: string;
  /** Hash of the key_id of its latest Status answer (kms v2). */
  keyIdHash(): string | undefined;
}

export type MigrateWith = 'storageversionmigration' | 'rewrite';
export type VerifyScope = 'selected' | 'all';

export interface RotateOptions {
  backend: RotationBackend;
  providers(): WriteProvider[];
  /**
   * Scans the store. `selected`: the resources the run works on (--resources); `all`: every resource
   * the configuration names, whatever --resources says. Retirement rests on `all`: a version retired
   * while a resource left out of the run still has values under it would lose them.
   */
  verify(onValue: (key: string, writer: string) => void, scope: VerifyScope): Promise<VerifyReport>;
  /** Needed with --migrate-with rewrite. */
  rewrite?(onProgress: (p: RewriteProgress) => void): Promise<RewriteSummary>;
  migrateWith: MigrateWith;
  /** Every API server (wait), the first also takes the migrations. */
  servers: readonly KubeClient[];
  /** Only finish a rotation in progress; never make a new version. */
  finish: boolean;
  /** Run this step alone. */
  only?: StepName;
  timeoutMs: number;
  pollMs: number;
  report: RotateReporter;
  signal?: AbortSignal;
}

export interface RotateResult {
  currentKeyId: string;
  /** A new version was made by this run. */
  rotated: boolean;
  retired: KeyVersionView[];
  /** Nothing was in progress (--finish, or a step alone with nothing old). */
  nothingToDo: boolean;
}

const TITLES: Record<StepName, string> = {
  'rotate-kek': 'rotate the KEK',
  wait: 'wait until the KMS plugins and every API server use the new key_id',
  migrate: 'migrate: re-encrypt every value still under an old key_id',
  verify: 'verify: no stored value needs an old KEK version',
  retire: 'retire the old KEK versions',
};

export async function rotate(o: RotateOptions): Promise<RotateResult> {
  const runs = (s: StepName): boolean => o.only === undefined || o.only === s;
  const step = (s: StepName): void => o.report.step(STEPS.indexOf(s) + 1, STEPS.length, TITLES[s]);
  const versions = await o.backend.listKeys();
  let current = versions.find((v) => v.state === 'current');
  if (!current) throw new RotateError('usage', `the ${o.backend.name} backend has no current KEK version`, 'create one with atrest kms-plugin init-key');
  let old = versions.filter((v) => v.state === 'active');
  let rotated = false;
  // Before anything changes: which providers this backend serves (fails on a wrong backend or a silent plugin).
  const ours = ourProviders(o, new Set(versions.map((v) => keyIdHash(v.keyId))));
  const result = (nothingToDo: boolean, retired: KeyVersionView[] = []): RotateResult => ({ currentKeyId: current!.keyId, rotated, retired, nothingToDo });

  if (runs('rotate-kek')) {
    step('rotate-kek');
    if (old.length > 0) {
      o.report.line(`a rotation is in progress: ${old.map((v) => v.keyId).join(', ')} still active, ${current.keyId} current; finishing it (run atrest rotate again afterwards for a new version)`);
    } else if (o.finish) {
      o.report.line(`no rotation in progress (only ${current.keyId} is active): nothing to do`);
      return result(true);
    } else {
      const keyId = await o.backend.rotateKey();
      o.report.line(`created ${keyId}; ${current.keyId} stays active until nothing needs it`);
      old = [current];
      current = { keyId, version: current.version + 1, state: 'current' };
      rotated = true;
    }
  } else if (old.length === 0) {
    o.report.line(`no rotation in progress (only ${current.keyId} is active): nothing to do`);
    return result(true);
  }
  const wantHash = keyIdHash(current.keyId);
  const oldHashes = new Set(old.map((v) => keyIdHash(v.keyId)));

  if (runs('wait')) {
    step('wait');
    await waitForPlugins(o, ours, wantHash);
    await waitForServers(o.servers, { providerNames: [...new Set(ours.map((p) => p.name))], wantHash, timeoutMs: o.timeoutMs, pollMs: o.pollMs, report: o.report, ...(o.signal ? { signal: o.signal } : {}) });
    o.report.line(`every API server (${o.servers.length}) writes with the new key_id`);
  }

  if (runs('migrate')) {
    step('migrate');
    const usage = await scan(o, oldHashes, 'selected');
    o.report.line(usage.old === 0 ? 'no value is under an old key_id: nothing to migrate' : `${usage.old} values under an old key_id (${perResource(usage.oldByResource)})`);
    if (usage.old > 0) await migrate(o, usage, wantHash);
  }

  let verified: KeyUsage | undefined;
  if (runs('verify') || runs('retire')) {
    step('verify');
    // Every resource of the configuration, not only --resources: what retirement rests on.
    verified = await scan(o, oldHashes, 'all');
    refuseUnlessUnused(verified, old, (hashes) => restoreAdvice(o.backend, versions, hashes));
    o.report.line(`no value needs ${old.map((v) => v.keyId).join(', ')}`);
  }

  if (!runs('retire')) return result(false);
  step('retire');
  const retired: KeyVersionView[] = [];
  for (const v of old) {
    const r = await o.backend.retireKey(v.keyId);
    retired.push(r);
    const restore = o.backend.restoreCommand(v.keyId);
    o.report.line(restore === undefined
      ? `retired ${v.keyId} (final: it cannot be restored)`
      : `retired ${v.keyId}; restorable${r.purgeAfter !== undefined ? ` until ${new Date(r.purgeAfter).toISOString()}` : ''} with: ${restore}`);
  }
  return result(false, retired);
}

/** The kms v2 write providers served by this backend (their Status key_id is one of its versions). */
function ourProviders(o: RotateOptions, hashes: ReadonlySet<string>): WriteProvider[] {
  const all = o.providers();
  const v1 = all.filter((p) => p.apiVersion !== 'v2');
  if (v1.length > 0) {
    throw new RotateError('usage', `kms ${v1[0]!.apiVersion} provider ${JSON.stringify(v1[0]!.name)} writes ${v1[0]!.resource}: kms v1 values do not record which KEK version wrapped them, so atrest rotate cannot prove an old version unused`,
      'move to kms v2 first (docs/operator-guide.md); leaving those resources out with --resources rotates the others, but retirement still refuses while any resource holds kms v1 values');
  }
  const silent = all.filter((p) => p.keyIdHash() === undefined);
  if (silent.length > 0) {
    throw new RotateError('incomplete', `the KMS plugin of provider ${silent.map((p) => JSON.stringify(p.name)).join(', ')} gave no valid Status answer (the socket in the EncryptionConfiguration)`,
      'start the plugin (or fix the socket path), then run atrest rotate again');
  }
  const ours = all.filter((p) => hashes.has(p.keyIdHash()!));
  if (ours.length === 0) {
    const seen = all.map((p) => `${p.name} (${p.resource}): ${p.keyIdHash()!}`).join('; ') || 'none';
    throw new RotateError('usage', `no kms v2 write provider of the selected resources is served by this ${o.backend.name} backend (providers: ${seen})`,
      'give the backend flags of the plugin the EncryptionConfiguration names (--backend, --key-file, ...), and check that the plugin socket answers');
  }
  return ours;
}

/** The tool's own connections to the plugin sockets must report the new key_id (the plugins refreshed). */
async function waitForPlugins(o: RotateOptions, ours: WriteProvider[], wantHash: string): Promise<void> {
  await pollUntil(async () => (ours.every((p) => p.keyIdHash() === wantHash) ? true : undefined), {
    timeoutMs: o.timeoutMs,
    pollMs: o.pollMs,
    ...(o.signal ? { signal: o.signal } : {}),
    onTimeout: () => new RotateError('incomplete', `the KMS plugin of provider ${ours.filter((p) => p.keyIdHash() !== wantHash).map((p) => p.name).join(', ')} does not report the new key_id`,
      'check that the plugin serves the rotated KEK (its --refresh-interval; restart it), then run atrest rotate again'),
  });
  o.report.line(`the KMS plugin${ours.length > 1 ? 's' : ''} of ${[...new Set(ours.map((p) => p.name))].join(', ')} report${ours.length > 1 ? '' : 's'} the new key_id`);
}

async function scan(o: RotateOptions, oldHashes: ReadonlySet<string>, scope: VerifyScope): Promise<KeyUsage> {
  const sampler = oldKeySampler(oldHashes);
  const report = await o.verify(sampler.onValue, scope);
  return keyUsage(report, oldHashes, sampler.samples);
}

async function migrate(o: RotateOptions, usage: KeyUsage, wantHash: string): Promise<void> {
  if (o.migrateWith === 'rewrite') {
    if (!o.rewrite) throw new RotateError('usage', '--migrate-with rewrite needs write access to the store', 'run atrest rotate where it can write to etcd or the embedded store');
    let last = 0;
    const summary = await o.rewrite((p) => {
      if (p.scanned - last >= 1000) {
        last = p.scanned;
        o.report.line(`rewrite: ${p.scanned} scanned, ${p.rewritten} rewritten, ${p.conflictsRetried} conflicts retried`);
      }
    });
    o.report.line(`rewrite: ${summary.rewritten} values re-encrypted (${summary.conflictsRetried} conflicts with API writes retried)`);
    return;
  }
  const client = o.servers[0];
  if (!client) throw new RotateError('usage', 'no API server to create StorageVersionMigrations on', 'give --kubeconfig (and --server for each API server)');
  const groupVersion = await svmGroupVersion(client);
  for (const resource of usage.oldByResource.keys()) {
    await runMigration(client, { groupVersion, resource, name: migrationName(resource, wantHash), timeoutMs: o.timeoutMs, pollMs: o.pollMs, report: o.report, ...(o.signal ? { signal: o.signal } : {}) }, true);
  }
}

/**
 * How to bring back the retired versions with these key_id hashes: the backend's restore-key
 * command for each, or, where retirement is final (kmip), who can still help.
 */
function restoreAdvice(backend: RotationBackend, versions: readonly KeyVersionView[], hashes: ReadonlySet<string>): string {
  const named = versions.filter((v) => hashes.has(keyIdHash(v.keyId)));
  const command = (keyId: string): string => backend.restoreCommand(keyId)
    ?? `${keyId}: ${backend.name} retirement is final for atrest, but the key material is kept by the key manager: ask its administrator to let it decrypt`;
  const how = named.length > 0 ? named.map((v) => command(v.keyId)).join('; ')
    : `the KMS plugin's message names the version: atrest verify prints it with the command (${backend.restoreCommand('<key_id>') ?? 'no restore-key for this backend: ask the key manager\'s administrator'})`;
  return `they are not lost: restore the version (${how}), then run atrest rotate again: it migrates them to the current version and retires the old one again`;
}

/** Retirement is refused while anything may still need an old version. */
function refuseUnlessUnused(usage: KeyUsage, old: readonly KeyVersionView[], restore: (hashes: ReadonlySet<string>) => string): void {
  const names = old.map((v) => v.keyId).join(', ');
  // Not checked is not known to be unused (nor lost): it stops the run as incomplete, never as a finding.
  if (usage.unchecked > 0) {
    throw new RotateError('incomplete', `${usage.unchecked} stored values could not be checked (${usage.uncheckedCauses.join('; ')}): cannot prove ${names} unused, not retiring`,
      'bring the KMS plugin (or the store) back and run atrest rotate again');
  }
  if (usage.needsRetiredKey > 0) {
    // Values under a version retired by an earlier run (a backup restored since): they still need it,
    // and they cannot be read now — the most urgent finding, so the first one told.
    throw new RotateError('findings', `${usage.needsRetiredKey} stored values need a KEK version that is already retired (e.g. ${usage.needsRetiredKeySamples.join(', ')}): ` +
      `the KMS plugin refuses to decrypt them until it is restored; not retiring ${names}`, restore(usage.retiredKeyIdHashes));
  }
  if (usage.old > 0) {
    throw new RotateError('findings', `${usage.old} stored values are still under ${names} (${perResource(usage.oldByResource)}), e.g. ${usage.oldSamples.join(', ')}: not retiring`,
      'they were written after the migration (an API server not listed with --server, still on the old key_id?) or restored from a backup: run atrest rotate again to migrate them');
  }
  if (usage.kmsV1 > 0) {
    throw new RotateError('findings', `${usage.kmsV1} stored values are kms v1, which does not record the KEK version: cannot prove ${names} unused, not retiring`,
      'move them to kms v2 (docs/operator-guide.md) and run atrest rotate again');
  }
  if (usage.undecryptable > 0) {
    throw new RotateError('findings', `${usage.undecryptable} stored values cannot be decrypted (e.g. ${usage.undecryptableSamples.join(', ')}): cannot prove ${names} unused, not retiring`,
      'atrest verify lists them; repair or delete them (docs/operator-guide.md, recovering from key loss) and run atrest rotate again');
  }
}
