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
import type { EncryptionConfiguration, GroupResource } from '../config/types.js';
import { messageOf } from '../errors.js';
import { DEFAULT_ETCD_PREFIX, parseStorageKey } from '../storage/keys.js';
import type { StoreLocation } from '../storage/open.js';
import type { Store } from '../storage/types.js';
import { parseGroupResource } from '../config/group-resource.js';
import { OUTPUT_FORMATS, type OutputFormat } from '../tools/defaults.js';
import { isSelected, parseResourceSelection } from './engine-options.js';
import type { EtcdSnapshot } from '../tools/etcd-snapshot.js';
import type { KmsTransformerFactory, ReadOrigin, TransformResult } from '../transform/types.js';

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
    .addOption(new Option('--encryption-provider-config <file>', 'the EncryptionConfiguration file')
      .env('ATREST_ENCRYPTION_PROVIDER_CONFIG').makeOptionMandatory())
    .option('--key <storage-key>', 'the storage key, as the argument')
    .addOption(new Option('--etcd-prefix <prefix>', 'the --etcd-prefix the storage keys are under').default(DEFAULT_ETCD_PREFIX).env('ATREST_ETCD_PREFIX'))
    .option('--resource <resource[.group]>', 'one value: the resource whose providers to use (default: taken from the storage key)')
    .option('--in <file>', 'one value from this file, - for stdin (the default when no store or snapshot is named)', '-')
    .option('--out <file>', 'output file (written atomically, mode 0600), - for stdout', '-')
    .option('--snapshot <file>', 'decrypt every live key under --etcd-prefix of this etcd snapshot file (etcdctl snapshot save output, or member/snap/db)')
    .option('--etcd-servers <urls>', 'read the value of KEY from these etcd client URLs (comma-separated)')
    .addOption(new Option('--etcd-cafile <file>', 'CA bundle of the etcd servers').env('ATREST_ETCD_CAFILE'))
    .addOption(new Option('--etcd-certfile <file>', 'client certificate for etcd').env('ATREST_ETCD_CERTFILE'))
    .addOption(new Option('--etcd-keyfile <file>', 'client key for etcd').env('ATREST_ETCD_KEYFILE'))
    .option('--data-dir <dir>', 'read the value of KEY from the embedded store in this directory')
    .option('--prefix', 'with a store: decrypt every key starting with KEY')
    .option('--resources <list>', 'with --snapshot or --prefix: only these resources (comma-separated, e.g. secrets,configmaps); default: all')
    .addOption(new Option('-o, --output <format>', 'raw (the plaintext bytes; several values: a key line, the bytes, a newline), json or yaml (the object; several: a v1 List)').choices([...OUTPUT_FORMATS]).default('raw'))
    .action(async (key: string | undefined, opts: DecryptFlags) => {
      await decryptCommand(key, opts);
    });
}

interface DecryptFlags {
  encryptionProviderConfig: string;
  key?: string;
  etcdPrefix: string;
  resource?: string;
  in: string;
  out: string;
  snapshot?: string;
  etcdServers?: string;
  etcdCafile?: string;
  etcdCertfile?: string;
  etcdKeyfile?: string;
  dataDir?: string;
  prefix?: boolean;
  resources?: string;
  output: OutputFormat;
}

async function decryptCommand(keyArg: string | undefined, opts: DecryptFlags): Promise<void> {
  try {
    if (keyArg !== undefined && opts.key !== undefined && keyArg !== opts.key) throw new Error('give the storage key once: as the argument or as --key');
    const key = keyArg ?? opts.key;
    const fromStore = opts.etcdServers !== undefined || opts.dataDir !== undefined;
    if (opts.snapshot !== undefined && (fromStore || key !== undefined)) throw new Error('--snapshot reads every key of the snapshot: give no KEY, --etcd-servers or --data-dir with it');
    if (opts.etcdServers !== undefined && opts.dataDir !== undefined) throw new Error('give --etcd-servers or --data-dir, not both');
    if (opts.prefix && !fromStore) throw new Error('--prefix lists a store: give --etcd-servers or --data-dir');
    if (opts.snapshot === undefined && key === undefined) throw new Error('name the storage key (the argument or --key), or give --snapshot FILE');
    if (opts.resources !== undefined && opts.snapshot === undefined && !opts.prefix) throw new Error('--resources selects among several values: use it with --snapshot or --prefix');
    if (opts.resource !== undefined && (opts.snapshot !== undefined || opts.prefix)) throw new Error('--resource names the resource of one value: with --snapshot or --prefix each key names its own (select with --resources)');
    if (opts.in !== '-' && (opts.snapshot !== undefined || fromStore)) throw new Error('--in gives the value itself: not with --snapshot, --etcd-servers or --data-dir');
    const wanted = opts.resources !== undefined ? parseResourceSelection(opts.resources) : undefined;
    const selects = wanted ? (gr: GroupResource) => isSelected(wanted, gr) : undefined;

    const { loadEncryptionConfigFile } = await import('../config/load.js');
    const { StoreError } = await import('../storage/errors.js');
    const { describeStoreLocation } = await import('../storage/open.js');
    const { decryptValues, formatMany, formatOne, listStoreValues, summarize } = await import('../tools/decrypt.js');
    const { buildTransformers } = await import('../transform/build.js');
    const { config } = await loadEncryptionConfigFile(opts.encryptionProviderConfig);
    // Read the input first: a missing snapshot or store fails before any KMS connection is made.
    let snapshot: EtcdSnapshot | undefined;
    if (opts.snapshot !== undefined) {
      const { readEtcdSnapshot } = await import('../tools/etcd-snapshot.js');
      snapshot = readEtcdSnapshot(await readFile(opts.snapshot));
    }
    const store = fromStore ? await openDecryptStore(opts) : undefined;
    let kms: KmsConnections | undefined;
    try {
      kms = await openKms(config);
      const set = buildTransformers(config, kms ? { kms: kms.factory } : {});
      try {
        if (snapshot !== undefined || opts.prefix) {
          const source = snapshot !== undefined
            ? `snapshot ${opts.snapshot ?? ''} (revision ${snapshot.status.revision}, ${snapshot.keyValues.length} live keys)`
            : `${describeStoreLocation(storeLocation(opts))} prefix ${key ?? ''}`;
          const values = snapshot !== undefined ? snapshot.keyValues : listStoreValues(store as Store, key as string);
          const report = await decryptValues(values, { transformers: set, etcdPrefix: opts.etcdPrefix, ...(selects ? { selects } : {}) });
          const out = formatMany(report.decrypted, opts.output);
          await writeOutput(opts.out, out.bytes);
          process.stderr.write(summarize(source, report, out));
          if (snapshot?.integrity === 'mismatch') {
            process.stderr.write('  warning: the SHA-256 that etcdctl snapshot save appended does not match: the file was damaged after it was saved (etcdutl snapshot restore would refuse it)\n');
          }
          if (report.undecryptable.length > 0 || out.undecodable.length > 0) process.exitCode = 1;
          return;
        }
        const storageKey = key as string;
        const resource = opts.resource !== undefined ? parseGroupResource(opts.resource) : parseStorageKey(opts.etcdPrefix, storageKey).groupResource;
        let input: Buffer;
        if (store) {
          const kv = await store.get(storageKey);
          if (!kv) throw new StoreError('NOT_FOUND', `key ${storageKey} not found in the ${describeStoreLocation(storeLocation(opts))}`, { key: storageKey });
          input = Buffer.from(kv.value);
        } else {
          input = await readInput(opts.in);
        }
        const result = await set.forResource(resource).fromStorage(input, Buffer.from(storageKey, 'utf8'));
        const out = formatOne({ key: storageKey, plaintext: Buffer.from(result.plaintext), origin: result.origin, stale: result.stale }, opts.output);
        const problem = out.undecodable[0];
        if (problem) throw new Error(`${storageKey} decrypts (${describeRead(result)}), but ${problem.error}; use -o raw`);
        await writeOutput(opts.out, out.bytes);
        process.stderr.write(describeRead(result) + '\n');
      } finally {
        await set.close();
      }
    } finally {
      await kms?.close();
      await store?.close();
    }
  } catch (err) {
    // one line, whatever the cause
    throw new Error(messageOf(err).replace(/\s*\n\s*/g, ' '), { cause: err });
  }
}

function storeLocation(opts: DecryptFlags): StoreLocation {
  return {
    readonly: true,
    ...(opts.dataDir !== undefined ? { dataDir: opts.dataDir } : {}),
    ...(opts.etcdServers ? { etcdServers: opts.etcdServers } : {}),
    ...(opts.etcdCafile ? { etcdCaFile: opts.etcdCafile } : {}),
    ...(opts.etcdCertfile ? { etcdCertFile: opts.etcdCertfile } : {}),
    ...(opts.etcdKeyfile ? { etcdKeyFile: opts.etcdKeyfile } : {}),
  };
}

async function openDecryptStore(opts: DecryptFlags): Promise<Store> {
  const { embeddedStoreFile, openStore } = await import('../storage/open.js');
  const loc = storeLocation(opts);
  if (opts.etcdServers === undefined && !existsSync(embeddedStoreFile(opts.dataDir))) {
    throw new Error(`no embedded store at ${embeddedStoreFile(opts.dataDir)} (check --data-dir)`);
  }
  return openStore(loc);
}

function withCommonOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--encryption-provider-config <file>', 'the EncryptionConfiguration file')
      .env('ATREST_ENCRYPTION_PROVIDER_CONFIG').makeOptionMandatory())
    .requiredOption('--key <storage-key>', 'the full storage key, e.g. /registry/secrets/default/db-password (the authenticated data)')
    .addOption(new Option('--etcd-prefix <prefix>', 'the --etcd-prefix the storage key is under').default(DEFAULT_ETCD_PREFIX).env('ATREST_ETCD_PREFIX'))
    .option('--resource <resource[.group]>', 'the resource whose providers to use (default: taken from the storage key), e.g. secrets or deployments.apps')
    .option('--in <file>', 'input file, - for stdin', '-')
    .option('--out <file>', 'output file, - for stdout', '-');
}

async function encryptValue(opts: TransformValueOptions): Promise<void> {
  try {
    const { loadEncryptionConfigFile } = await import('../config/load.js');
    const { buildTransformers } = await import('../transform/build.js');
    const { config } = await loadEncryptionConfigFile(opts.encryptionProviderConfig);
    const resource = opts.resource !== undefined ? parseGroupResource(opts.resource) : parseStorageKey(opts.etcdPrefix, opts.key).groupResource;
    const input = await readInput(opts.in);
    const dataCtx = Buffer.from(opts.key, 'utf8');
    const kms = await openKms(config);
    try {
      const set = buildTransformers(config, kms ? { kms: kms.factory } : {});
      try {
        // kms v2 can only write once its first Status call has delivered a key id
        await kms?.ready();
        await writeOutput(opts.out, await set.forResource(resource).toStorage(input, dataCtx));
      } finally {
        await set.close();
      }
    } finally {
      await kms?.close();
    }
  } catch (err) {
    // one line, whatever the cause
    throw new Error(messageOf(err).replace(/\s*\n\s*/g, ' '), { cause: err });
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

interface KmsConnections {
  factory: KmsTransformerFactory;
  ready(): Promise<void>;
  close(): Promise<void>;
}

/** The gRPC KMS clients, loaded only when the configuration has kms providers. */
async function openKms(config: EncryptionConfiguration): Promise<KmsConnections | undefined> {
  const { usesKms } = await import('../config/resources.js');
  if (!usesKms(config)) return undefined;
  const { createKmsProviders } = await import('../kms/factory.js');
  return createKmsProviders({});
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
