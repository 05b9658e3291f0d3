// `atrest verify`: which provider, key and key_id protect each stored value (src/tools/verify.ts).
// Exit 0 only when every value of the selected resources is written by the current write provider
// and key; 1 when stale or undecryptable values remain.
import { Command, Option } from 'commander';
import { loadEncryptionConfigFile } from '../config/load.js';
import { buildResourceTable, parseGroupResource } from '../config/resources.js';
import type { GroupResource } from '../config/types.js';
import { createKmsProviders } from '../kms/factory.js';
import { silentLogger } from '../log.js';
import { DEFAULT_DATA_DIR, openStore, type StoreLocation } from '../storage/open.js';
import { DEFAULT_ETCD_PREFIX } from '../storage/keys.js';
import { buildTransformers } from '../transform/build.js';
import { formatVerifyReport, verifyStore } from '../tools/verify.js';

interface VerifyFlags {
  encryptionProviderConfig: string;
  etcdServers?: string;
  etcdCafile?: string;
  etcdCertfile?: string;
  etcdKeyfile?: string;
  dataDir: string;
  etcdPrefix: string;
  resources?: string;
  output: 'table' | 'json';
}

export function registerVerify(program: Command): void {
  program
    .command('verify')
    .description('count, per resource, which provider/key/key_id protects each stored value; exit 0 only when all are current')
    .addOption(new Option('--encryption-provider-config <file>', 'the EncryptionConfiguration in force').makeOptionMandatory().env('ATREST_ENCRYPTION_PROVIDER_CONFIG'))
    .addOption(new Option('--etcd-servers <urls>', 'comma-separated etcd client URLs (else the embedded store)').env('ATREST_ETCD_SERVERS'))
    .addOption(new Option('--etcd-cafile <file>', 'CA bundle of the etcd servers').env('ATREST_ETCD_CAFILE'))
    .addOption(new Option('--etcd-certfile <file>', 'client certificate for etcd').env('ATREST_ETCD_CERTFILE'))
    .addOption(new Option('--etcd-keyfile <file>', 'client key for etcd').env('ATREST_ETCD_KEYFILE'))
    .addOption(new Option('--data-dir <dir>', 'data directory of the embedded store').default(DEFAULT_DATA_DIR).env('ATREST_DATA_DIR'))
    .addOption(new Option('--etcd-prefix <prefix>', 'key prefix of the objects').default(DEFAULT_ETCD_PREFIX).env('ATREST_ETCD_PREFIX'))
    .addOption(new Option('--resources <list>', 'comma-separated resources (e.g. secrets,configmaps); default: those the config names'))
    .addOption(new Option('-o, --output <format>', 'table or json').choices(['table', 'json']).default('table'))
    .action(async (flags: VerifyFlags) => {
      const loaded = await loadEncryptionConfigFile(flags.encryptionProviderConfig);
      let selects: (gr: GroupResource) => boolean;
      if (flags.resources) {
        const wanted = flags.resources.split(',').map((r) => parseGroupResource(r.trim()));
        selects = (gr) => wanted.some((w) => w.resource === gr.resource && w.group === gr.group);
      } else {
        const table = buildResourceTable(loaded.config);
        selects = (gr) => table.providersFor(gr) !== undefined;
      }
      const kms = createKmsProviders({ log: silentLogger() });
      const loc: StoreLocation = {
        dataDir: flags.dataDir,
        readonly: true,
        ...(flags.etcdServers ? { etcdServers: flags.etcdServers } : {}),
        ...(flags.etcdCafile ? { etcdCaFile: flags.etcdCafile } : {}),
        ...(flags.etcdCertfile ? { etcdCertFile: flags.etcdCertfile } : {}),
        ...(flags.etcdKeyfile ? { etcdKeyFile: flags.etcdKeyfile } : {}),
      };
      const store = openStore(loc);
      try {
        const transformers = buildTransformers(loaded.config, { kms: kms.factory });
        await kms.ready();
        const report = await verifyStore({ store, transformers, etcdPrefix: flags.etcdPrefix, selects });
        process.stdout.write(flags.output === 'json' ? JSON.stringify(report, null, 2) + '\n' : formatVerifyReport(report));
        if (!report.ok) process.exitCode = 1;
      } finally {
        await store.close();
        await kms.close();
      }
    });
}
