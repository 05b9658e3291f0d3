// `atrest encrypt` / `atrest decrypt`: transform one value offline exactly as kube-apiserver would
// store it under a storage key (format.md §0, §6). The resource (and so the provider list) comes
// from the storage key, or from --resource; the storage key itself is the authenticated data.
// `decrypt` also reads the value from a store (--etcd-servers / --data-dir), a key prefix of one
// (--prefix), or every key of an etcd snapshot file (--snapshot), and prints objects as json/yaml
// (src/tools/decrypt.ts).
// Output is all-or-nothing: a file is written beside the target and renamed into place.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { open, readFile, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { Command, Option } from 'commander';
import type { GroupResource } from '../config/types.js';
import { DEFAULT_ETCD_PREFIX, parseStorageKey } from '../storage/keys.js';
import type { StoreLocation } from '../storage/open.js';
import type { Store } from '../storage/types.js';
import { parseGroupResource } from '../config/group-resource.js';
import { messageOf } from '../errors.js';
import { OUTPUT_FORMATS, type OutputFormat } from '../tools/defaults.js';
import { isSelected, parseResourceSelection, ToolUsageError, type StoreFlags } from './engine-options.js';
import { DECRYPT_EXIT_CODES, EXIT_FOUND, EXIT_INCOMPLETE, EXIT_OK, exitCodesHelp, reportToolError } from './exit-codes.js';
import { CheckIncompleteError } from '../storage/check-failure.js';
import type { EtcdSnapshot } from '../tools/etcd-snapshot.js';
import type { ReadOrigin, TransformResult } from '../transform/types.js';

interface TransformValueOptions {
  encryptionProviderConfig: string;
  key: string;
  etcdPrefix: string;
  resource?: string;
  in: string;
  out: string;
}

export function registerEncrypt(program: Command): void {
  withCommonOptions(program.command('encrypt'))
    .description('encrypt one value for a storage key with the write provider of an EncryptionConfiguration (the bytes kube-apiserver would put in etcd)')
    .action(async (opts: TransformValueOptions) => {
      await encryptValue(opts);
    });
}

export function registerDecrypt(program: Command): void {
  program
    .command('decrypt')
    .description('decrypt stored values with an EncryptionConfiguration: one value from a file/stdin or a store, a key prefix of a store, or every key of an etcd snapshot file; -o raw|json|yaml. The output holds the secrets in the clear; stderr never does')
    .argument('[key]', 'the full storage key (the authenticated data), e.g. /registry/secrets/default/db-password; a key prefix with --prefix')
    .addOption(new Option('--encryption-provider-config <file>', 'the EncryptionConfiguration file').makeOptionMandatory())
    .option('--key <storage-key>', 'the storage key, as the argument')
    .addOption(new Option('--etcd-prefix <prefix>', 'the --etcd-prefix the storage keys are under').default(DEFAULT_ETCD_PREFIX))
    .addOption(new Option('--resource <resource[.group]>', 'one value: the resource whose providers to use').default(undefined, 'the one the storage key names'))
    .option('--in <file>', 'one value from this file, - for stdin; read when no store or snapshot is named', '-')
    .option('--out <file>', 'output file (written atomically, mode 0600), - for stdout', '-')
    .option('--snapshot <file>', 'decrypt every live key under --etcd-prefix of this etcd snapshot file (etcdctl snapshot save output, or member/snap/db)')
    .addOption(new Option('--etcd-servers <urls>', 'read the value of KEY from these etcd client URLs (comma-separated)'))
    .addOption(new Option('--etcd-cafile <file>', 'CA bundle of the etcd servers'))
    .addOption(new Option('--etcd-certfile <file>', 'client certificate for etcd'))
    .addOption(new Option('--etcd-keyfile <file>', 'client key for etcd'))
    .addOption(new Option('--data-dir <dir>', 'read the value of KEY from the embedded store in this directory'))
    .option('--prefix', 'with a store: decrypt every key starting with KEY')
    .addOption(new Option('--resources <list>', 'with --snapshot or --prefix: only these resources (comma-separated, e.g. secrets,configmaps)').default(undefined, 'all'))
    .addOption(new Option('-o, --output <format>', 'raw (the plaintext bytes; several values: a key line, the bytes, a newline), json or yaml (the object; several: a v1 List)').choices([...OUTPUT_FORMATS]).default('raw'))
    .addHelpText('after', exitCodesHelp(DECRYPT_EXIT_CODES))
    .action(async (key: string | undefined, opts: DecryptFlags, cmd: Command) => {
      await decryptCommand(key, fromEnvironmentAsDefaults(opts, cmd));
    });
}

interface DecryptFlags extends StoreFlags {
  encryptionProviderConfig: string;
  key?: string;
  etcdPrefix: string;
  resource?: string;
  in: string;
  out: string;
  snapshot?: string;
  prefix?: boolean;
  resources?: string;
  output: OutputFormat;
}

/**
 * ATREST_DATA_DIR and ATREST_ETCD_SERVERS name a store as defaults: a source named on the command
 * line (--snapshot, --in, the other store flag) wins over them, and of the two from the environment
 * etcd wins, as for `serve` and `get-raw`.
 */
function fromEnvironmentAsDefaults(opts: DecryptFlags, cmd: Command): DecryptFlags {
  const fromEnv = (key: keyof DecryptFlags) => opts[key] !== undefined && cmd.getOptionValueSource(key) === 'env';
  const out = { ...opts };
  const otherSource = opts.snapshot !== undefined || opts.in !== '-';
  if (fromEnv('dataDir') && (otherSource || opts.etcdServers !== undefined)) delete out.dataDir;
  if (fromEnv('etcdServers') && (otherSource || (opts.dataDir !== undefined && !fromEnv('dataDir')))) delete out.etcdServers;
  return out;
}

async function decryptCommand(keyArg: string | undefined, opts: DecryptFlags): Promise<void> {
  try {
    process.exitCode = await runDecrypt(keyArg, opts);
  } catch (err) {
    // one line, whatever the cause; the exit code says what kind (src/cli/exit-codes.ts)
    process.exitCode = reportToolError('decrypt', err);
  }
}

/** Usage errors of the flag combination (exit 2). */
function checkDecryptFlags(key: string | undefined, opts: DecryptFlags): void {
  const fromStore = opts.etcdServers !== undefined || opts.dataDir !== undefined;
  const usage = (message: string) => new ToolUsageError(message);
  if (opts.snapshot !== undefined && (fromStore || key !== undefined)) throw usage('--snapshot reads every key of the snapshot: give no KEY, --etcd-servers or --data-dir with it');
  if (opts.etcdServers !== undefined && opts.dataDir !== undefined) throw usage('give --etcd-servers or --data-dir, not both');
  if (opts.prefix && !fromStore) throw usage('--prefix lists a store: give --etcd-servers or --data-dir');
  if (opts.snapshot === undefined && key === undefined) throw usage('name the storage key (the argument or --key), or give --snapshot FILE');
  if (opts.resources !== undefined && opts.snapshot === undefined && !opts.prefix) throw usage('--resources selects among several values: use it with --snapshot or --prefix');
  if (opts.resource !== undefined && (opts.snapshot !== undefined || opts.prefix)) throw usage('--resource names the resource of one value: with --snapshot or --prefix each key names its own (select with --resources)');
  if (opts.in !== '-' && (opts.snapshot !== undefined || fromStore)) throw usage('--in gives the value itself: not with --snapshot, --etcd-servers or --data-dir');
  if (opts.snapshot !== undefined && !existsSync(opts.snapshot)) throw usage(`--snapshot ${opts.snapshot}: no such file`);
}

async function runDecrypt(keyArg: string | undefined, opts: DecryptFlags): Promise<number> {
  if (keyArg !== undefined && opts.key !== undefined && keyArg !== opts.key) throw new ToolUsageError('give the storage key once: as the argument or as --key');
  const key = keyArg ?? opts.key;
  checkDecryptFlags(key, opts);
  const fromStore = opts.etcdServers !== undefined || opts.dataDir !== undefined;
  const wanted = opts.resources !== undefined ? parseResourceSelection(opts.resources) : undefined;
  const selects = wanted ? (gr: GroupResource) => isSelected(wanted, gr) : undefined;

  const { StoreError } = await import('../storage/errors.js');
  const { describeStoreLocation } = await import('../storage/open.js');
  const { decryptValues, formatMany, formatOne, listStoreValues, summarize } = await import('../tools/decrypt.js');
  const { CheckedReader } = await import('../storage/checked-read.js');
  const { openKmsEngine, openToolStore, storeLocation } = await import('./engine.js');
  // The last usage errors: no embedded store there, half a TLS pair (exit 2).
  const loc = fromStore ? storeLocation(opts, true) : undefined;
  // The configuration first (exit 2 when bad), then the input: a missing snapshot or store fails before any KMS call.
  const engine = await openKmsEngine({ encryptionProviderConfig: opts.encryptionProviderConfig }, {});
  let store: Store | undefined;
  try {
    let snapshot: EtcdSnapshot | undefined;
    if (opts.snapshot !== undefined) {
      const { readEtcdSnapshot } = await import('../tools/etcd-snapshot.js');
      snapshot = readEtcdSnapshot(await readFile(opts.snapshot));
    }
    if (loc) store = await openToolStore(loc);
    const reader = new CheckedReader(engine.kmsProviders());
    if (snapshot !== undefined || opts.prefix) {
      const source = snapshot !== undefined
        ? `snapshot ${opts.snapshot ?? ''} (revision ${snapshot.status.revision}, ${snapshot.keyValues.length} live keys)`
        : `${describeStoreLocation(loc as StoreLocation)} prefix ${key ?? ''}`;
      const values = snapshot !== undefined ? snapshot.keyValues : listStoreValues(store as Store, key as string);
      const report = await decryptValues(values, { transformers: engine.transformers, etcdPrefix: opts.etcdPrefix, reader, ...(selects ? { selects } : {}) });
      const out = formatMany(report.decrypted, opts.output);
      await writeOutput(opts.out, out.bytes);
      process.stderr.write(summarize(source, report, out));
      if (snapshot?.integrity === 'mismatch') {
        process.stderr.write('  warning: the SHA-256 that etcdctl snapshot save appended does not match: the file was damaged after it was saved (etcdutl snapshot restore would refuse it)\n');
      }
      if (report.notChecked.length > 0) return EXIT_INCOMPLETE;
      return report.undecryptable.length > 0 || report.needsRetiredKey.length > 0 || out.undecodable.length > 0 ? EXIT_FOUND : EXIT_OK;
    }
    const storageKey = key as string;
    const resource = resourceOf(storageKey, opts);
    let input: Buffer;
    if (store) {
      const kv = await store.get(storageKey);
      if (!kv) throw new StoreError('NOT_FOUND', `key ${storageKey} not found in the ${describeStoreLocation(loc as StoreLocation)}`, { key: storageKey });
      input = Buffer.from(kv.value);
    } else {
      input = await readInput(opts.in);
    }
    const outcome = await reader.read(engine.transformers.forResource(resource), storageKey, input);
    if (outcome.kind === 'unchecked') throw new CheckIncompleteError(`could not check ${storageKey} (not known to be lost): ${outcome.cause}`);
    if (outcome.kind === 'undecryptable') throw new Error(outcome.error);
    // A finding (exit 1), worded so that nobody reads it as lost: the plugin's message says how to restore the version.
    if (outcome.kind === 'needs-retired-key') throw new Error(`${storageKey} needs a retired KEK version (not lost: restore it, then decrypt again): ${outcome.error}`);
    const result = outcome.result;
    const out = formatOne({ key: storageKey, plaintext: Buffer.from(result.plaintext), origin: result.origin, stale: result.stale }, opts.output);
    const problem = out.undecodable[0];
    if (problem) throw new Error(`${storageKey} decrypts (${describeRead(result)}), but ${problem.error}; use -o raw`);
    await writeOutput(opts.out, out.bytes);
    process.stderr.write(describeRead(result) + '\n');
    return EXIT_OK;
  } finally {
    await store?.close();
    await engine.close();
  }
}

function withCommonOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--encryption-provider-config <file>', 'the EncryptionConfiguration file').makeOptionMandatory())
    .requiredOption('--key <storage-key>', 'the full storage key, e.g. /registry/secrets/default/db-password (the authenticated data)')
    .addOption(new Option('--etcd-prefix <prefix>', 'the --etcd-prefix the storage key is under').default(DEFAULT_ETCD_PREFIX))
    .addOption(new Option('--resource <resource[.group]>', 'the resource whose providers to use, e.g. secrets or deployments.apps').default(undefined, 'the one the storage key names'))
    .option('--in <file>', 'input file, - for stdin', '-')
    .option('--out <file>', 'output file, - for stdout', '-');
}

async function encryptValue(opts: TransformValueOptions): Promise<void> {
  try {
    const { openKmsEngine } = await import('./engine.js');
    const engine = await openKmsEngine({ encryptionProviderConfig: opts.encryptionProviderConfig }, {});
    try {
      const resource = resourceOf(opts.key, opts);
      if (opts.in !== '-' && !existsSync(opts.in)) throw new ToolUsageError(`--in ${opts.in}: no such file`);
      const input = await readInput(opts.in);
      // kms v2 can only write once its first Status call has delivered a key id
      await engine.ready();
      await writeOutput(opts.out, await engine.transformers.forResource(resource).toStorage(input, Buffer.from(opts.key, 'utf8')));
    } finally {
      await engine.close();
    }
  } catch (err) {
    process.exitCode = reportToolError('encrypt', err);
  }
}

/** The resource whose providers apply: --resource, else the one the storage key names (a key that names none is a usage error). */
function resourceOf(storageKey: string, opts: { resource?: string; etcdPrefix: string }): GroupResource {
  try {
    return opts.resource !== undefined ? parseGroupResource(opts.resource) : parseStorageKey(opts.etcdPrefix, storageKey).groupResource;
  } catch (err) {
    throw new ToolUsageError(messageOf(err), { cause: err });
  }
}

/** The one-line stderr report of `decrypt`. */
export function describeRead(result: Pick<TransformResult, 'stale' | 'origin'>): string {
  return `read by ${describeOrigin(result.origin)}; stale: ${result.stale ? 'yes (not written by the current write provider and key: rewrite it)' : 'no'}`;
}

function describeOrigin(origin: ReadOrigin): string {
  switch (origin.provider) {
    case 'identity':
      return 'identity (the value is not encrypted)';
    case 'kms':
      return `kms ${origin.kmsApiVersion ?? ''} provider "${origin.name ?? ''}"${origin.keyIdHash ? ` (key_id ${origin.keyIdHash})` : ''}`;
    default:
      return `${origin.provider} key "${origin.name ?? ''}"`;
  }
}

async function readInput(path: string): Promise<Buffer> {
  if (path !== '-') return readFile(path);
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** stdout, or a file replaced atomically (temp file in the same directory, then rename; 0600). */
async function writeOutput(path: string, data: Uint8Array): Promise<void> {
  if (path === '-') {
    await new Promise<void>((resolve, reject) => {
      process.stdout.write(data, (err) => (err ? reject(err) : resolve()));
    });
    return;
  }
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  const handle = await open(tmp, 'wx', 0o600);
  let renamed = false;
  try {
    await handle.writeFile(data);
    await handle.sync();
    await handle.close();
    await rename(tmp, path);
    renamed = true;
  } finally {
    if (!renamed) {
      await handle.close().catch(() => undefined);
      await unlink(tmp).catch(() => undefined);
    }
  }
}
