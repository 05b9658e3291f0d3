// `atrest get-raw KEY`: the stored bytes of one key, exactly as `etcdctl get --print-value-only`
// shows them, on etcd or on the embedded store, so `atrest get-raw /registry/secrets/default/s |
// hexdump -C` checks encryption at rest on either backend. With --prefix it lists like
// `etcdctl get --prefix`: each key on a line, then its value and a newline (or keys only).
import { Command, InvalidArgumentError, Option } from 'commander';
import type { StoreFlags } from './engine-options.js';
import { DEFAULT_DATA_DIR } from '../storage/defaults.js';

interface GetRawOptions extends StoreFlags {
  prefix?: boolean;
  keysOnly?: boolean;
  limit?: number;
  dataDir: string;
}

/** Writes to stdout and resolves once the bytes are handed to the OS (a closed pipe ends quietly). */
function writeOut(chunk: Buffer | string): Promise<void> {
  return new Promise((resolve, reject) => {
    process.stdout.write(chunk, (err) => {
      if (err && (err as NodeJS.ErrnoException).code !== 'EPIPE') reject(err);
      else resolve();
    });
  });
}

export function registerGetRaw(program: Command): void {
  program
    .command('get-raw')
    .description('print the raw stored bytes of a key (what etcdctl get shows), from etcd or the embedded store')
    .argument('<key>', 'full storage key, e.g. /registry/secrets/default/secret1 (a key prefix with --prefix)')
    .option('--prefix', 'list every key starting with KEY: a key line, then its value and a newline')
    .option('--keys-only', 'with --prefix: print only the keys, one per line')
    .addOption(
      new Option('--limit <n>', 'with --prefix: at most this many keys').argParser((v) => {
        const n = Number(v);
        if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('must be a positive integer');
        return n;
      }),
    )
    .addOption(new Option('--etcd-servers <urls>', 'comma-separated etcd client URLs (else the embedded store)'))
    .addOption(new Option('--etcd-cafile <file>', 'CA bundle of the etcd servers'))
    .addOption(new Option('--etcd-certfile <file>', 'client certificate for etcd'))
    .addOption(new Option('--etcd-keyfile <file>', 'client key for etcd'))
    .addOption(new Option('--data-dir <dir>', 'data directory of the embedded store').default(DEFAULT_DATA_DIR))
    .action(async (key: string, opts: GetRawOptions) => {
      const { StoreError } = await import('../storage/errors.js');
      const { describeStoreLocation, openStore } = await import('../storage/open.js');
      const { storeLocation } = await import('./engine.js');
      // flag problems (no embedded store there, half a TLS pair) are usage errors (exit 2)
      const loc = storeLocation(opts, true);
      const store = await openStore(loc);
      try {
        if (!opts.prefix) {
          const kv = await store.get(key);
          if (!kv) throw new StoreError('NOT_FOUND', `key ${key} not found in the ${describeStoreLocation(loc)}`, { key });
          await writeOut(kv.value);
          return;
        }
        // Page through at one revision so a large prefix is listed consistently without one huge response.
        let remaining = opts.limit ?? Infinity;
        let after: string | undefined;
        let revision: number | undefined;
        for (;;) {
          const page = await store.list(key, { limit: Math.min(500, remaining), after, revision });
          for (const kv of page.items) {
            await writeOut(opts.keysOnly ? kv.key + '\n' : Buffer.concat([Buffer.from(kv.key + '\n'), kv.value, Buffer.from('\n')]));
          }
          remaining -= page.items.length;
          revision = page.revision;
          if (!page.more || remaining <= 0 || page.items.length === 0) break;
          after = page.items[page.items.length - 1]?.key;
        }
      } finally {
        await store.close();
      }
    });
}
