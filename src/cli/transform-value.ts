// `atrest encrypt` / `atrest decrypt`: transform one value offline exactly as kube-apiserver would
// store it under a storage key (format.md §0, §6). The resource (and so the provider list) comes
// from the storage key, or from --resource; the storage key itself is the authenticated data.
// Output is all-or-nothing: a file is written beside the target and renamed into place.
import { randomBytes } from 'node:crypto';
import { open, readFile, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { Command, Option } from 'commander';
import { parseGroupResource } from '../config/group-resource.js';
import { loadEncryptionConfigFile } from '../config/load.js';
import type { EncryptionConfiguration } from '../config/types.js';
import { messageOf } from '../errors.js';
import { DEFAULT_ETCD_PREFIX, parseStorageKey } from '../storage/keys.js';
import { buildTransformers } from '../transform/build.js';
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
      await transformValue('encrypt', opts);
    });
}

export function registerDecrypt(program: Command): void {
  withCommonOptions(program.command('decrypt'))
    .description('decrypt one stored value of a storage key with an EncryptionConfiguration; says on stderr which provider and key read it and whether it is stale')
    .action(async (opts: TransformValueOptions) => {
      await transformValue('decrypt', opts);
    });
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

async function transformValue(mode: 'encrypt' | 'decrypt', opts: TransformValueOptions): Promise<void> {
  try {
    const { config } = await loadEncryptionConfigFile(opts.encryptionProviderConfig);
    const resource = opts.resource !== undefined ? parseGroupResource(opts.resource) : parseStorageKey(opts.etcdPrefix, opts.key).groupResource;
    const input = await readInput(opts.in);
    const dataCtx = Buffer.from(opts.key, 'utf8');
    const kms = usesKms(config) ? await openKms() : undefined;
    try {
      const set = buildTransformers(config, kms ? { kms: kms.factory } : {});
      try {
        const transformer = set.forResource(resource);
        if (mode === 'encrypt') {
          // kms v2 can only write once its first Status call has delivered a key id
          await kms?.ready();
          await writeOutput(opts.out, await transformer.toStorage(input, dataCtx));
        } else {
          const result = await transformer.fromStorage(input, dataCtx);
          await writeOutput(opts.out, result.plaintext);
          process.stderr.write(describeRead(result) + '\n');
        }
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

function usesKms(config: EncryptionConfiguration): boolean {
  return config.resources.some((r) => r.providers.some((p) => 'kms' in p));
}

interface KmsConnections {
  factory: KmsTransformerFactory;
  ready(): Promise<void>;
  close(): Promise<void>;
}

/** The gRPC KMS clients, loaded only when the configuration has kms providers. */
async function openKms(): Promise<KmsConnections> {
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
