// The StorageVersionMigration objects as the migration controller (src/controllers) sees them: the
// same ObjectRepository as the REST handlers, and the controller's writes checked by the same status
// rules as a PUT to /status (kube's controller writes through UpdateStatus).
import type { MigrationEvent, MigrationObjects } from '../controllers/storage-version-migration/types.js';
import { isStoreError } from '../storage/errors.js';
import { invalid } from './errors.js';
import type { ObjectRepository } from './object-repository.js';
import { cloneJson, type KubeObject } from './objects.js';
import { storageversionmigrations as svm } from './storage-version-migration-type.js';

const PAGE = 500;
const MAX_CONFLICT_RETRIES = 10;

export function migrationObjects(repo: ObjectRepository): MigrationObjects {
  const status = svm.status as NonNullable<typeof svm.status>;
  return {
    async list() {
      const items: KubeObject[] = [];
      let after: string | undefined;
      let revision: number | undefined;
      for (;;) {
        // Values that cannot be read are skipped: the REST list reports them, the controller cannot run them.
        const page = await repo.list(svm, undefined, { limit: PAGE, collectCorrupt: true, ...(after !== undefined ? { after } : {}), ...(revision !== undefined ? { revision } : {}) });
        revision = page.revision;
        items.push(...page.items.map((i) => i.obj));
        if (!page.more || page.lastKey === undefined) break;
        after = page.lastKey;
      }
      return { items, revision };
    },

    async get(name) {
      return (await repo.get(svm, undefined, name))?.obj;
    },

    async update(name, uid, mutate) {
      for (let attempt = 0; ; attempt++) {
        const cur = await repo.get(svm, undefined, name);
        if (!cur || cur.obj.metadata.uid !== uid) return undefined;
        const next = cloneJson(cur.obj);
        mutate(next);
        const causes = status.validate(next, cur.obj);
        if (causes.length > 0) throw invalid(svm.kind, name, causes, svm.group);
        try {
          return await repo.update(svm, next, cur.revision);
        } catch (err) {
          if (isStoreError(err, 'NOT_FOUND')) return undefined;
          if (isStoreError(err, 'CONFLICT') && attempt < MAX_CONFLICT_RETRIES) continue;
          throw err;
        }
      }
    },

    watch(afterRevision, handlers) {
      return repo.watch(svm, undefined, afterRevision, {
        onEvent: (e) => {
          let event: MigrationEvent | undefined;
          if (e.type === 'put') event = { type: 'put', obj: e.obj };
          else if (e.obj?.metadata.name) event = { type: 'delete', name: e.obj.metadata.name };
          if (event) handlers.onEvent(event);
        },
        onError: (err) => handlers.onError(err),
        // An object that cannot be read is not one the controller can run; the watch goes on.
        onDecryptError: () => {},
      });
    },
  };
}
