// Issue #20 §3: which errno / SQLite codes mean a full, read-only or failing disk, and the words a
// start-up on such a data directory uses. Real disks: test/reliability/store-write-failures.test.ts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { classifyDiskError, dataDirError, DataDirError } from '../../src/storage/disk-errors.js';
import { isLastingWriteFailure, StoreError } from '../../src/storage/errors.js';

const withCode = (code: string): Error => Object.assign(new Error(code), { code });

test('errno and SQLite codes → NO_SPACE, READ_ONLY, IO_ERROR; others are not disk errors', () => {
  const cases: Array<[string, string | undefined]> = [
    ['ENOSPC', 'NO_SPACE'], ['SQLITE_FULL', 'NO_SPACE'], ['EDQUOT', 'NO_SPACE'],
    ['EROFS', 'READ_ONLY'], ['SQLITE_READONLY', 'READ_ONLY'], ['SQLITE_READONLY_DBMOVED', 'READ_ONLY'], ['EACCES', 'READ_ONLY'], ['EPERM', 'READ_ONLY'],
    ['EIO', 'IO_ERROR'], ['SQLITE_IOERR_WRITE', 'IO_ERROR'], ['SQLITE_IOERR_FSYNC', 'IO_ERROR'],
    ['SQLITE_BUSY', undefined], ['ECONNREFUSED', undefined], ['SQLITE_CONSTRAINT_TRIGGER', undefined],
  ];
  for (const [code, problem] of cases) assert.equal(classifyDiskError(withCode(code))?.problem, problem, code);
  assert.equal(classifyDiskError(new Error('no code')), undefined);
  assert.ok(isLastingWriteFailure(new StoreError('NO_SPACE', 'x')));
  assert.ok(!isLastingWriteFailure(new StoreError('UNAVAILABLE', 'x')));
  assert.ok(!isLastingWriteFailure(new StoreError('TOO_LARGE', 'x')));
});

test('a start-up step that hits a disk error says what is wrong and what to do; other errors pass unchanged', () => {
  const io = dataDirError(withCode('EIO'), '/nonexistent/atrest', 'write admin.kubeconfig');
  assert.ok(io instanceof DataDirError);
  assert.equal(io.code, 'DATA_DIR_IO_ERROR');
  assert.equal(io.message, 'cannot write admin.kubeconfig in the data directory /nonexistent/atrest (--data-dir): the disk reported an I/O error (EIO). ' +
    'To fix: check the disk under /nonexistent/atrest (dmesg, smartctl); if the store file is damaged, restore it from a backup or an etcd snapshot');
  const made = dataDirError(withCode('EACCES'), '/nonexistent/atrest', 'create');
  assert.match((made as Error).message, /^cannot create the data directory \/nonexistent\/atrest \(--data-dir\): permission denied \(EACCES\)\. To fix: make \/nonexistent\/atrest writable/);
  const other = new Error('something else');
  assert.equal(dataDirError(other, '/x', 'open the embedded store'), other);
});
