// `atrest rewrite` on the embedded store, aescbc → kms v2 with the real local-backend plugin over
// its socket: counts, values unchanged, compare-and-swap conflicts (a competing writer injected
// right before the CAS), --dry-run, a stopped run resumed, undecryptable values, fail-closed
// encryption, refusing to start while the plugin is down, exit codes and the JSON summary. CLI runs
// use the built bin/atrest.js (`npm run build` first; `npm test` does).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { StoreError } from '../../src/storage/errors.js';
import { openSqliteStore } from '../../src/storage/sqlite.js';
import type { Store, UpdateOp, UpdateOutcome } from '../../src/storage/types.js';
import { RewriteError, rewriteStore, type RewriteOptions, type RewriteSummary } from '../../src/tools/rewrite.js';
import type { TransformerSet } from '../../src/transform/types.js';
import { cliPath, runCli } from '../helpers/cli.js';
import { makeTempDir, repoRoot, waitFor } from '../helpers/plugin.js';
import { captureLog } from '../helpers/test-log.js';
import {
  CONFIGMAPS, KMS_NAME, SECRETS, SECRET_MARK, newTransformers, oldTransformer, secretKey, secretObject, seedOldSecrets, startLocalPlugin,
  writeConfigs, type LocalPlugin,
} from './rewrite-fixture.js';

const selectsAll = () => true;

let tmp: { dir: string; cleanup: () => Promise<void> };
let plugin: LocalPlugin;
let engine: Awaited<ReturnType<typeof newTransformers>>;
let configs: { oldPath: string; newPath: string };
let storeCount = 0;

before(async () => {
  tmp = await makeTempDir('atrest-rewrite-');
  plugin = await startLocalPlugin(tmp.dir);
  engine = await newTransformers(plugin.socket);
  configs = await writeConfigs(tmp.dir, plugin.socket);
});

after(async () => {
  await engine.close();
  await plugin.close();
  await tmp.cleanup();
});

/** A fresh data dir with an embedded store in it. */
function freshStore(): { dataDir: string; store: ReturnType<typeof openSqliteStore> } {
  const dataDir = join(tmp.dir, `data-${++storeCount}`);
  return { dataDir, store: openSqliteStore(join(dataDir, 'store.db')) };
}

function run(store: Store, extra: Partial<RewriteOptions> = {}, transformers: TransformerSet = engine.transformers): Promise<RewriteSummary> {
  return rewriteStore({ store, transformers, etcdPrefix: '/registry', selects: selectsAll, ...extra });
}

async function readBack(store: Store, key: string): Promise<{ raw: Buffer; plain: Buffer; stale: boolean }> {
  const kv = await store.get(key);
  assert.ok(kv, `${key} exists`);
  const r = await engine.transformers.forResource(SECRETS).fromStorage(kv.value, Buffer.from(key));
  return { raw: kv.value, plain: r.plaintext, stale: r.stale };
}

/**
 * A Store whose writes first let a competitor act on some keys (fault injection): `competitor(key)`
 * runs right before the CAS that would write `key`, so the CAS sees a newer revision.
 */
function competingStore(inner: Store, competitor: (key: string) => Promise<void>, withUpdateMany = true): Store {
  const store: Store = {
    get: (k) => inner.get(k),
    create: (k, v) => inner.create(k, v),
    update: async (k, v, rev) => {
      await competitor(k);
      return inner.update(k, v, rev);
    },
    delete: (k, rev) => inner.delete(k, rev),
    list: (p, o) => inner.list(p, o),
    watch: (p, o) => inner.watch(p, o),
    revision: () => inner.revision(),
    ping: () => inner.ping(),
    close: () => inner.close(),
  };
  if (withUpdateMany) {
    store.updateMany = async (ops: readonly UpdateOp[]): Promise<UpdateOutcome[]> => {
      for (const op of ops) await competitor(op.key);
      return inner.updateMany!(ops);
    };
  }
  return store;
}

describe('atrest rewrite on the embedded store', () => {
  it('re-encrypts every stale value with kms v2 in batches, keeps the plaintext, and a second run finds nothing to do', async () => {
    const { dataDir, store } = freshStore();
    const keys = await seedOldSecrets(store, 23);
    const plainKey = secretKey('plain');
    await store.create(plainKey, secretObject('plain'));
    const cmKey = '/registry/configmaps/default/cm';
    await store.create(cmKey, await oldTransformer(CONFIGMAPS).toStorage(Buffer.from('{"kind":"ConfigMap"}'), Buffer.from(cmKey)));
    await store.create('/registry/pods/default/p', Buffer.from('{"kind":"Pod"}')); // not selected below
    const progress: number[] = [];

    const summary = await rewriteStore({
      store, transformers: engine.transformers, etcdPrefix: '/registry', batchSize: 5,
      selects: (gr) => gr.resource === 'secrets' || gr.resource === 'configmaps',
      onProgress: (p) => progress.push(p.scanned),
    });
    assert.equal(summary.scanned, 25);
    assert.equal(summary.stale, 25);
    assert.equal(summary.rewritten, 25);
    assert.equal(summary.alreadyCurrent, 0);
    assert.equal(summary.conflictsRetried, 0);
    assert.deepEqual(summary.undecryptable, []);
    assert.equal(summary.ok, true);
    assert.deepEqual(progress, [4, 9, 14, 19, 24, 25], 'one progress report per page of 5 keys (the pod is listed, not counted)');
    for (const key of [...keys, plainKey]) {
      const back = await readBack(store, key);
      assert.ok(back.raw.subarray(0, 40).toString().startsWith(`k8s:enc:kms:v2:${KMS_NAME}:`), key);
      assert.equal(back.stale, false);
      assert.ok(!back.raw.includes(SECRET_MARK), 'the stored bytes hold no plaintext');
      const name = key.split('/').pop()!;
      assert.deepEqual(back.plain, secretObject(name));
    }
    const cm = await store.get(cmKey);
    assert.ok(cm!.value.toString('latin1').startsWith(`k8s:enc:kms:v2:${KMS_NAME}:`));
    assert.equal((await store.get('/registry/pods/default/p'))!.value.toString(), '{"kind":"Pod"}', 'unselected resources are not touched');

    const revision = await store.revision();
    const again = await run(store, { selects: (gr) => gr.resource !== 'pods' });
    assert.equal(again.rewritten, 0);
    assert.equal(again.alreadyCurrent, 25);
    assert.equal(await store.revision(), revision, 'a rerun writes nothing');
    await store.close();

    const verify = await runCli(['verify', '--encryption-provider-config', configs.newPath, '--data-dir', dataDir]);
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
  });

  it('never overwrites a concurrent write: a stale competing value is re-read and rewritten, a current one kept, a deletion counted', async () => {
    for (const withUpdateMany of [true, false]) {
      const { store: inner } = freshStore();
      const keys = await seedOldSecrets(inner, 10);
      const [staleKey, currentKey, deletedKey] = [keys[2]!, keys[5]!, keys[7]!];
      const competing = { stale: secretObject('s002', 'competitor-stale'), current: secretObject('s005', 'competitor-current') };
      let currentBytes: Buffer | undefined;
      const done = new Set<string>();
      const store = competingStore(inner, async (key) => {
        if (done.has(key)) return;
        done.add(key);
        const kv = await inner.get(key);
        if (key === staleKey) await inner.update(key, await oldTransformer().toStorage(competing.stale, Buffer.from(key)), kv!.modRevision);
        if (key === currentKey) {
          currentBytes = await engine.transformers.forResource(SECRETS).toStorage(competing.current, Buffer.from(key));
          await inner.update(key, currentBytes, kv!.modRevision);
        }
        if (key === deletedKey) await inner.delete(key);
      }, withUpdateMany);

      const summary = await run(store, { batchSize: 4 });
      const label = withUpdateMany ? 'updateMany' : 'update';
      assert.equal(summary.scanned, 10, label);
      assert.equal(summary.conflictsRetried, 2, label);
      assert.equal(summary.deletedMeanwhile, 1, label);
      assert.equal(summary.rewritten, 8, label);
      assert.equal(summary.alreadyCurrent, 1, label);
      assert.equal(summary.ok, true, label);

      const s = await readBack(inner, staleKey);
      assert.deepEqual(s.plain, competing.stale, `${label}: the competitor's value survives`);
      assert.equal(s.stale, false, `${label}: and is re-encrypted`);
      const c = await inner.get(currentKey);
      assert.deepEqual(c!.value, currentBytes, `${label}: a current competing value is left exactly as written`);
      assert.equal(await inner.get(deletedKey), undefined, `${label}: a deleted key stays deleted`);
      await inner.close();
    }
  });

  it('goes on at the current revision when the server compacts the revision it was listing at', async () => {
    const { store: inner } = freshStore();
    await seedOldSecrets(inner, 9);
    let lists = 0;
    const store: Store = Object.create(inner) as Store;
    store.list = async (prefix, options) => {
      lists++;
      if (lists === 2) {
        assert.ok(options?.revision, 'the second page is read at the first page\'s revision');
        await inner.compact(await inner.revision());
        throw new StoreError('COMPACTED', 'required revision has been compacted');
      }
      return inner.list(prefix, options);
    };
    const summary = await run(store, { batchSize: 4 });
    assert.equal(summary.scanned, 9, 'every key is looked at exactly once');
    assert.equal(summary.rewritten, 9);
    assert.equal(summary.ok, true);
    await inner.close();
  });

  it('gives up on a key that keeps changing after the retry limit and reports it', async () => {
    const { store: inner } = freshStore();
    const keys = await seedOldSecrets(inner, 3);
    const busy = keys[1]!;
    let n = 0;
    const store = competingStore(inner, async (key) => {
      if (key !== busy) return;
      const kv = await inner.get(key);
      await inner.update(key, await oldTransformer().toStorage(secretObject('s001', `busy-${++n}`), Buffer.from(key)), kv!.modRevision);
    });
    const summary = await run(store, { maxAttempts: 3 });
    assert.deepEqual(summary.retriesExhausted, [busy]);
    assert.equal(summary.ok, false);
    assert.equal(summary.rewritten, 2);
    assert.equal(summary.conflictsRetried, 4, 'the batch conflict and three retried attempts');
    assert.deepEqual((await readBack(inner, busy)).plain, secretObject('s001', `busy-${n}`), 'the latest competing value is what is stored');
    await inner.close();
  });

  it('--dry-run counts what would be rewritten and writes nothing', async () => {
    const { dataDir, store } = freshStore();
    await seedOldSecrets(store, 6);
    await store.create(secretKey('current'), await engine.transformers.forResource(SECRETS).toStorage(secretObject('current'), Buffer.from(secretKey('current'))));
    const revision = await store.revision();
    await store.close();

    const r = await runCli(['rewrite', '--encryption-provider-config', configs.newPath, '--data-dir', dataDir, '--dry-run', '-o', 'json']);
    assert.equal(r.code, 0, r.stderr);
    const summary = JSON.parse(r.stdout) as RewriteSummary;
    assert.equal(summary.dryRun, true);
    assert.equal(summary.scanned, 7);
    assert.equal(summary.stale, 6);
    assert.equal(summary.rewritten, 0);
    assert.equal(summary.alreadyCurrent, 1);
    const check = openSqliteStore(join(dataDir, 'store.db'), { readonly: true });
    assert.equal(await check.revision(), revision, 'the store revision is unchanged');
    await check.close();
  });

  it('a run stopped midway is finished by running it again (resumable)', async () => {
    const { dataDir, store } = freshStore();
    await seedOldSecrets(store, 30);
    await assert.rejects(
      run(store, { batchSize: 10, afterBatch: (n) => { if (n === 2) throw new Error('crash after batch 2'); } }),
      /crash after batch 2/,
    );
    const page = await store.list('/registry/secrets/', {});
    const kms = page.items.filter((kv) => kv.value.toString('latin1').startsWith('k8s:enc:kms:v2:')).length;
    assert.equal(kms, 20, 'two batches were written before the stop');
    await store.close();

    const stale = await runCli(['verify', '--encryption-provider-config', configs.newPath, '--data-dir', dataDir]);
    assert.equal(stale.code, 1, 'verify sees the 10 stale values left');
    const rerun = await runCli(['rewrite', '--encryption-provider-config', configs.newPath, '--data-dir', dataDir, '-o', 'json']);
    assert.equal(rerun.code, 0, rerun.stderr);
    const summary = JSON.parse(rerun.stdout) as RewriteSummary;
    assert.equal(summary.rewritten, 10);
    assert.equal(summary.alreadyCurrent, 20);
    const ok = await runCli(['verify', '--encryption-provider-config', configs.newPath, '--data-dir', dataDir]);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  });

  it('a CLI run killed midway (SIGKILL) is finished by running it again', async () => {
    const { dataDir, store } = freshStore();
    await seedOldSecrets(store, 100);
    await store.close();
    // --rate 20 keeps the run going for seconds, so it is certainly killed midway.
    const child = spawn(process.execPath, [cliPath, 'rewrite', '--encryption-provider-config', configs.newPath, '--data-dir', dataDir, '--batch-size', '10', '--rate', '20'], {
      cwd: repoRoot, stdio: ['ignore', 'ignore', 'pipe'],
    });
    captureLog('rewrite-killed', child.stderr);
    child.stderr.resume();
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
    const reader = openSqliteStore(join(dataDir, 'store.db'), { readonly: true });
    const kmsCount = async () => (await reader.list('/registry/secrets/')).items.filter((kv) => kv.value.toString('latin1').startsWith('k8s:enc:kms:v2:')).length;
    try {
      await waitFor('some values rewritten', async () => (await kmsCount()) >= 10, 60_000);
      child.kill('SIGKILL');
      assert.equal(await exited, 'SIGKILL');
      const done = await kmsCount();
      assert.ok(done >= 10 && done < 100, `killed midway (${done} of 100 rewritten)`);
    } finally {
      child.kill('SIGKILL');
      await reader.close();
    }
    const rerun = await runCli(['rewrite', '--encryption-provider-config', configs.newPath, '--data-dir', dataDir, '-o', 'json']);
    assert.equal(rerun.code, 0, rerun.stderr);
    const summary = JSON.parse(rerun.stdout) as RewriteSummary;
    assert.equal(summary.rewritten + summary.alreadyCurrent, 100);
    assert.ok(summary.rewritten > 0 && summary.alreadyCurrent >= 10);
    const ok = await runCli(['verify', '--encryption-provider-config', configs.newPath, '--data-dir', dataDir]);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  });

  it('an aborted run (SIGTERM) reports what it did and stops with a RewriteError', async () => {
    const { store } = freshStore();
    await seedOldSecrets(store, 12);
    const abort = new AbortController();
    const err = await run(store, { batchSize: 4, signal: abort.signal, afterBatch: (n) => { if (n === 1) abort.abort(); } }).then(
      () => assert.fail('should stop'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof RewriteError && err.code === 'REWRITE_ABORTED', String(err));
    assert.equal(err.summary.rewritten, 4);
    assert.equal(err.summary.ok, false, 'a stopped run is never reported ok');
    await store.close();
  });

  it('lists undecryptable values by key (never their contents), exits 1, and still rewrites the others', async () => {
    const { dataDir, store } = freshStore();
    await seedOldSecrets(store, 4);
    const broken = secretKey('broken');
    await store.create(broken, Buffer.from(`k8s:enc:aescbc:v1:key1:${SECRET_MARK}-not-a-ciphertext`));
    await store.close();

    const r = await runCli(['rewrite', '--encryption-provider-config', configs.newPath, '--data-dir', dataDir]);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /scanned 5, rewritten 4, already current 0, conflicts retried 0, deleted meanwhile 0, undecryptable 1/);
    assert.match(r.stdout, new RegExp(`undecryptable ${broken}: `));
    assert.ok(!r.stdout.includes(SECRET_MARK) && !r.stderr.includes(SECRET_MARK), 'no value is printed');
  });

  it('fails closed: an encryption failure stops the run before anything of that value is written', async () => {
    const { store } = freshStore();
    await seedOldSecrets(store, 5);
    const revision = await store.revision();
    const failing: TransformerSet = {
      forResource: (gr) => {
        const t = engine.transformers.forResource(gr);
        return { fromStorage: (v, k) => t.fromStorage(v, k), toStorage: () => Promise.reject(new Error('KMS said no')) };
      },
      close: async () => {},
    };
    await assert.rejects(run(store, {}, failing), (err: unknown) => err instanceof RewriteError && err.code === 'REWRITE_ENCRYPT_FAILED' && /KMS said no/.test(err.message) && !err.summary.ok);
    assert.equal(await store.revision(), revision, 'nothing was written');
    await store.close();
  });

  it('refuses to start while the write provider (the kms plugin) is down, naming it', async () => {
    const { dataDir, store } = freshStore();
    await seedOldSecrets(store, 2);
    const revision = await store.revision();
    await store.close();
    const downDir = join(tmp.dir, 'down-configs');
    await mkdir(downDir, { recursive: true });
    const down = await writeConfigs(downDir, join(tmp.dir, 'no-such-plugin.sock'));
    const r = await runCli(['rewrite', '--encryption-provider-config', down.newPath, '--data-dir', dataDir]);
    // 3: the run could not start (issue #20), naming the provider, its endpoint and the cause.
    assert.equal(r.code, 3, r.stdout + r.stderr);
    assert.match(r.stderr, new RegExp(`refusing to start: the write provider of (secrets|configmaps) is not usable: (kms-providers?(-\\d+)?: )?kms v2 provider "${KMS_NAME}" \\(plugin unix://[^)]+no-such-plugin\\.sock\\): plugin unreachable: `));
    const check = openSqliteStore(join(dataDir, 'store.db'), { readonly: true });
    assert.equal(await check.revision(), revision, 'nothing was written');
    await check.close();
  });

  it('usage and configuration errors exit 2', async () => {
    const { dataDir, store } = freshStore();
    await store.close();
    const badFlag = await runCli(['rewrite', '--encryption-provider-config', configs.newPath, '--data-dir', dataDir, '--batch-size', '0']);
    assert.equal(badFlag.code, 2, badFlag.stderr);
    assert.match(badFlag.stderr, /--batch-size must be an integer >= 1/);
    const noConfig = await runCli(['rewrite', '--encryption-provider-config', join(tmp.dir, 'missing.yaml'), '--data-dir', dataDir]);
    assert.equal(noConfig.code, 2, noConfig.stderr);
    const noStore = await runCli(['rewrite', '--encryption-provider-config', configs.newPath, '--data-dir', join(tmp.dir, 'nothing-here')]);
    assert.equal(noStore.code, 2, noStore.stderr);
    assert.match(noStore.stderr, /no embedded store at/);
  });

  it('the built CLI rewrites and prints the JSON summary; --rate paces without changing the result', async () => {
    const { dataDir, store } = freshStore();
    await seedOldSecrets(store, 8);
    await store.close();
    const r = await runCli(['rewrite', '--encryption-provider-config', configs.newPath, '--data-dir', dataDir, '--batch-size', '3', '--rate', '1000', '-o', 'json']);
    assert.equal(r.code, 0, r.stderr);
    const summary = JSON.parse(r.stdout) as RewriteSummary;
    assert.deepEqual(
      { scanned: summary.scanned, stale: summary.stale, rewritten: summary.rewritten, alreadyCurrent: summary.alreadyCurrent, conflictsRetried: summary.conflictsRetried, deletedMeanwhile: summary.deletedMeanwhile, undecryptable: summary.undecryptable, ok: summary.ok, dryRun: summary.dryRun },
      { scanned: 8, stale: 8, rewritten: 8, alreadyCurrent: 0, conflictsRetried: 0, deletedMeanwhile: 0, undecryptable: [], ok: true, dryRun: false },
    );
    assert.equal(typeof summary.durationMs, 'number');
    // Not a terminal: JSON log lines on stderr (start and done), never a value.
    const events = r.stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => (JSON.parse(l) as { event?: string }).event);
    assert.ok(events.includes('rewrite-start') && events.includes('rewrite-done'), r.stderr);
    assert.ok(!r.stderr.includes(SECRET_MARK));
    const verify = await runCli(['verify', '--encryption-provider-config', configs.newPath, '--data-dir', dataDir]);
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
  });
});
