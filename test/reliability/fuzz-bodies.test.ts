// Issue #20 §1, one request must not take the server down: generated deep, wide and aliased
// documents of every accepted content type (JSON, YAML, protobuf, merge / strategic merge / JSON
// patch, server-side apply as JSON and as YAML) against a real `atrest serve` process (the built
// CLI), while a bystander client keeps creating and reading small objects (JSON and YAML).
// Asserted: over a limit → a 4xx Status naming the limit; within the limits → success; every
// bystander request succeeds; the server is alive and its peak RSS bounded afterwards. No timings.
// CI-sized run counts; ATREST_FUZZ_RUNS raises them (`npm run fuzz:long`).
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import type { RunningApiServer } from '../../src/api/index.js';
import { MAX_NESTING_DEPTH } from '../../src/api/body-limits.js';
import { PROTOBUF_MAGIC } from '../../src/k8s-objects/protobuf.js';
import { apiRequest, serveClient, writeAesGcmConfig, type HttpResult } from '../helpers/server.js';
import { ServeProcess } from '../helpers/task-page.js';
import { report } from './load.js';

const RUNS = Number(process.env['ATREST_FUZZ_RUNS'] ?? 12);
const SECRETS = '/api/v1/namespaces/default/secrets';
/** Peak RSS bound of the server: catches unbounded growth (the issue saw 1.7 GB), not a tuning target. */
const MAX_VMHWM_MB = 1024;

type Kind = 'json' | 'yaml-flow' | 'yaml-block' | 'yaml-compact' | 'protobuf' | 'merge' | 'strategic' | 'json-patch' | 'apply-json' | 'apply-yaml';
const KINDS: Kind[] = ['json', 'yaml-flow', 'yaml-block', 'yaml-compact', 'protobuf', 'merge', 'strategic', 'json-patch', 'apply-json', 'apply-yaml'];

interface Req {
  method: 'POST' | 'PATCH';
  path: string;
  contentType: string;
  body: string | Buffer;
}

// ---------------------------------------------------------------- documents

const jsonDeep = (d: number, shape: 'array' | 'object'): string => (shape === 'array' ? '['.repeat(d) + ']'.repeat(d) : '{"a":'.repeat(d) + '1' + '}'.repeat(d));
const yamlBlockDeep = (d: number, indent: number): string => Array.from({ length: d }, (_, i) => `${' '.repeat(indent + i)}a:`).join('\n') + ' 1';

function varint(n: number): Buffer {
  const out: number[] = [];
  while (n > 127) {
    out.push((n & 127) | 128);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return Buffer.from(out);
}
const pbField = (no: number, payload: Buffer | string): Buffer => {
  const b = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
  return Buffer.concat([varint((no << 3) | 2), varint(b.length), b]);
};
/** A Kubernetes protobuf Secret whose one managedFields entry carries `fieldsV1` (JSON text). */
function protobufSecret(name: string, fieldsV1: string): Buffer {
  const entry = Buffer.concat([pbField(1, 'fuzz'), pbField(2, 'Update'), pbField(3, 'v1'), pbField(6, 'FieldsV1'), pbField(7, pbField(1, fieldsV1))]);
  const meta = Buffer.concat([pbField(1, name), pbField(17, entry)]);
  return Buffer.concat([PROTOBUF_MAGIC, pbField(1, Buffer.concat([pbField(1, 'v1'), pbField(2, 'Secret')])), pbField(2, pbField(1, meta))]);
}

/**
 * A request of `kind` whose document nests `d` levels below an unknown field `x` (dropped with a
 * warning when the object is stored) and whose total depth is returned alongside.
 */
function deepRequest(kind: Kind, d: number, shape: 'array' | 'object', name: string): { req: Req; depth: number } {
  const target = `${SECRETS}/target`;
  const deep = jsonDeep(d, shape);
  switch (kind) {
    case 'json':
      return { depth: d + 1, req: { method: 'POST', path: SECRETS, contentType: 'application/json', body: `{"metadata":{"name":"${name}"},"x":${deep}}` } };
    case 'yaml-flow':
      return { depth: d + 1, req: { method: 'POST', path: SECRETS, contentType: 'application/yaml', body: `metadata: {name: ${name}}\nx: ${deep}\n` } };
    case 'yaml-block':
      return { depth: d + 1, req: { method: 'POST', path: SECRETS, contentType: 'application/yaml', body: `metadata:\n  name: ${name}\nx:\n${yamlBlockDeep(d, 2)}\n` } };
    case 'yaml-compact':
      return { depth: d + 1, req: { method: 'POST', path: SECRETS, contentType: 'application/yaml', body: `metadata:\n  name: ${name}\nx:\n${'- '.repeat(d)}1\n` } };
    case 'protobuf': {
      const fields = '{"f:a":'.repeat(d) + '{}' + '}'.repeat(d);
      return { depth: d + 5, req: { method: 'POST', path: SECRETS, contentType: 'application/vnd.kubernetes.protobuf', body: protobufSecret(name, fields) } };
    }
    case 'merge':
      return { depth: d + 1, req: { method: 'PATCH', path: target, contentType: 'application/merge-patch+json', body: `{"x":${deep}}` } };
    case 'strategic':
      return { depth: d + 1, req: { method: 'PATCH', path: target, contentType: 'application/strategic-merge-patch+json', body: `{"x":${deep}}` } };
    case 'json-patch':
      return { depth: d + 2, req: { method: 'PATCH', path: target, contentType: 'application/json-patch+json', body: `[{"op":"add","path":"/x","value":${deep}}]` } };
    case 'apply-json':
      return { depth: d + 1, req: { method: 'PATCH', path: `${target}?fieldManager=fuzz`, contentType: 'application/apply-patch+yaml', body: `{"apiVersion":"v1","kind":"Secret","metadata":{"name":"target"},"x":${deep}}` } };
    case 'apply-yaml':
      return { depth: d + 1, req: { method: 'PATCH', path: `${target}?fieldManager=fuzz`, contentType: 'application/apply-patch+yaml', body: `apiVersion: v1\nkind: Secret\nmetadata:\n  name: target\nx:\n${'- '.repeat(d)}1\n` } };
  }
}

/** Wide documents: `w` list items or map keys under the unknown field `x` (JSON or YAML). */
function wideRequest(kind: 'json' | 'yaml' | 'merge' | 'apply-yaml', w: number, shape: 'list' | 'map', name: string): Req {
  const items = shape === 'list' ? `[${Array.from({ length: w }, (_, i) => String(i)).join(',')}]` : `{${Array.from({ length: w }, (_, i) => `"k${i}":${i}`).join(',')}}`;
  if (kind === 'json') return { method: 'POST', path: SECRETS, contentType: 'application/json', body: `{"metadata":{"name":"${name}"},"x":${items}}` };
  if (kind === 'merge') return { method: 'PATCH', path: `${SECRETS}/target`, contentType: 'application/merge-patch+json', body: `{"x":${items}}` };
  const yamlItems = shape === 'list' ? Array.from({ length: w }, (_, i) => `  - ${i}`).join('\n') : Array.from({ length: w }, (_, i) => `  k${i}: ${i}`).join('\n');
  if (kind === 'yaml') return { method: 'POST', path: SECRETS, contentType: 'application/yaml', body: `metadata:\n  name: ${name}\nx:\n${yamlItems}\n` };
  return { method: 'PATCH', path: `${SECRETS}/target?fieldManager=fuzz`, contentType: 'application/apply-patch+yaml', body: `apiVersion: v1\nkind: Secret\nmetadata:\n  name: target\nx:\n${yamlItems}\n` };
}

/**
 * Anchors a0..a(levels-1), each a list of `fanout` aliases of the one before: `a(levels-1)` expands
 * to fanout^levels leaves (the billion-laughs shape when both are large).
 */
function aliasRequest(levels: number, fanout: number, name: string, apply: boolean): { req: Req; expansion: number; aliases: number } {
  const lines = ['a0: &a0 [x, x]'];
  for (let i = 1; i < levels; i++) lines.push(`a${i}: &a${i} [${Array(fanout).fill(`*a${i - 1}`).join(', ')}]`);
  const doc = `${apply ? 'apiVersion: v1\nkind: Secret\n' : ''}metadata:\n  name: ${apply ? 'target' : name}\nx:\n${lines.map((l) => `  ${l}`).join('\n')}\n`;
  const req: Req = apply
    ? { method: 'PATCH', path: `${SECRETS}/target?fieldManager=fuzz`, contentType: 'application/apply-patch+yaml', body: doc }
    : { method: 'POST', path: SECRETS, contentType: 'application/yaml', body: doc };
  return { req, expansion: 2 * fanout ** (levels - 1), aliases: (levels - 1) * fanout };
}

// ---------------------------------------------------------------- checks

const counts: Record<string, Record<string, number>> = {};
function tally(label: string, r: HttpResult): void {
  const byStatus = (counts[label] ??= {});
  byStatus[r.status] = (byStatus[r.status] ?? 0) + 1;
}

/** A 4xx Status with a one-line message matching `limit`. */
function assertRefused(label: string, r: HttpResult, codes: number[], limit: RegExp): void {
  assert.ok(codes.includes(r.status), `${label}: wanted ${codes.join('/')}, got ${r.status} ${r.text.slice(0, 300)}`);
  const st = r.json<{ kind: string; code: number; message: string }>();
  assert.equal(st.kind, 'Status');
  assert.equal(st.code, r.status);
  assert.match(st.message, limit, label);
  assert.ok(!/[\r\n]/.test(st.message), `${label}: message not one line`);
}

function assertAccepted(label: string, r: HttpResult): void {
  assert.ok(r.status === 200 || r.status === 201, `${label}: wanted 2xx, got ${r.status} ${r.text.slice(0, 300)}`);
}

function vmHwmMb(pid: number): number {
  const m = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Math.round(Number(m?.[1] ?? NaN) / 1024);
}

/** Creates and reads small objects (JSON and YAML) until stopped; every answer must be a success. */
class Bystander {
  ok = 0;
  failures: string[] = [];
  private stopped = false;
  private readonly done: Promise<void>;

  constructor(private readonly server: RunningApiServer) {
    this.done = this.run();
  }

  private async run(): Promise<void> {
    for (let i = 0; !this.stopped; i++) {
      const yaml = i % 3 === 2;
      const name = `bystander-${i}`;
      const body = yaml ? `metadata:\n  name: ${name}\ndata:\n  v: dmFsdWU=\n` : JSON.stringify({ metadata: { name }, data: { v: 'dmFsdWU=' } });
      for (const [method, path, expect, opts] of [
        ['POST', SECRETS, 201, { body, headers: { 'Content-Type': yaml ? 'application/yaml' : 'application/json' } }],
        ['GET', `${SECRETS}/${name}`, 200, {}],
      ] as const) {
        try {
          const r = await apiRequest(this.server, method, path, opts);
          if (r.status === expect) this.ok++;
          else this.failures.push(`${method} ${path}: ${r.status} ${r.text.slice(0, 200)}`);
        } catch (err) {
          this.failures.push(`${method} ${path}: ${String(err)}`);
        }
      }
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
  }
}

test('request bodies of every content type are bounded in depth, width, aliases and cost while other clients are served', { timeout: 600_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'atrest-fuzz-bodies-'));
  const dataDir = join(dir, 'data');
  const serve = await ServeProcess.start(['--data-dir', dataDir, '--encryption-provider-config', writeAesGcmConfig(dir).path]);
  const server = serveClient(serve.url, dataDir);
  // Fresh connections: large bodies and echoed objects back to back trip a Node keep-alive reset (apiRequest).
  const send = (r: Req): Promise<HttpResult> => apiRequest(server, r.method, r.path, { body: r.body, headers: { 'Content-Type': r.contentType }, agent: false });
  let seq = 0;
  const name = (): string => `fz-${seq++}`;
  let bystander: Bystander | undefined;
  try {
    assert.equal((await send({ method: 'POST', path: SECRETS, contentType: 'application/json', body: '{"metadata":{"name":"target"}}' })).status, 201);
    bystander = new Bystander(server);

    // Deep: every content type, depth within and past MAX_NESTING_DEPTH.
    await fc.assert(fc.asyncProperty(
      fc.constantFrom(...KINDS),
      fc.oneof(fc.integer({ min: 1, max: MAX_NESTING_DEPTH - 10 }), fc.integer({ min: MAX_NESTING_DEPTH + 5, max: 400_000 })),
      fc.constantFrom('array' as const, 'object' as const),
      async (kind, wanted, shape) => {
        // Within the 3 MiB body limit: indented YAML costs depth² bytes, protobuf's fieldsV1 8 a level.
        const d = Math.min(wanted, kind === 'yaml-block' ? 2000 : kind === 'protobuf' ? 300_000 : wanted);
        const { req, depth } = deepRequest(kind, d, shape, name());
        const r = await send(req);
        tally(`deep:${kind}`, r);
        if (depth > MAX_NESTING_DEPTH) assertRefused(`deep ${kind} ${depth}`, r, [400], new RegExp(`exceeded max depth of ${MAX_NESTING_DEPTH}`));
        else assertAccepted(`deep ${kind} ${depth}`, r);
      }), { numRuns: RUNS * 4 });

    // Wide: many list items or map keys (JSON up to 50,000; YAML, which decodes slowly, up to 3,000).
    await fc.assert(fc.asyncProperty(
      fc.constantFrom('json' as const, 'yaml' as const, 'merge' as const, 'apply-yaml' as const),
      fc.integer({ min: 1, max: 50_000 }),
      fc.constantFrom('list' as const, 'map' as const),
      async (kind, wanted, shape) => {
        const w = kind === 'json' || kind === 'merge' ? wanted : Math.min(wanted, 3000);
        const r = await send(wideRequest(kind, w, shape, name()));
        tally(`wide:${kind}`, r);
        assertAccepted(`wide ${kind} ${w}`, r);
      }), { numRuns: RUNS });

    // Aliases: a few are fine, a billion laughs is refused naming the aliasing or expansion limit.
    await fc.assert(fc.asyncProperty(fc.integer({ min: 1, max: 12 }), fc.integer({ min: 1, max: 12 }), fc.boolean(), async (levels, fanout, apply) => {
      const { req, expansion, aliases } = aliasRequest(levels, fanout, name(), apply);
      const r = await send(req);
      tally('aliases', r);
      if (expansion <= 200 && aliases <= 100) assertAccepted(`aliases ${levels}x${fanout}`, r);
      else if (expansion > 5_000_000) assertRefused(`aliases ${levels}x${fanout}`, r, [400, 413], /excessive aliasing|expands to more than/);
      else if (r.status >= 400) assertRefused(`aliases ${levels}x${fanout}`, r, [400, 413], /excessive aliasing|expands to more than/);
    }), { numRuns: RUNS * 2 });

    // Fixed cases, one per bound that is not depth.
    const fixed: Array<[string, Req, number[], RegExp]> = [
      ['json-patch 10,001 operations', { method: 'PATCH', path: `${SECRETS}/target`, contentType: 'application/json-patch+json',
        body: JSON.stringify(Array.from({ length: 10_001 }, () => ({ op: 'test', path: '/metadata/name', value: 'target' }))) },
      [413], /The allowed maximum operations in a JSON patch is 10000, got 10001/],
      ['json-patch doubling copies', { method: 'PATCH', path: `${SECRETS}/target`, contentType: 'application/json-patch+json',
        body: JSON.stringify([{ op: 'add', path: '/x', value: ['a'.repeat(1000)] }, ...Array.from({ length: 40 }, () => ({ op: 'copy', from: '/x', path: '/x/-' }))]) },
      [422], /accumulated size increase of copy exceeds the limit 3145728/],
      ['json-patch moves that nest deeper', { method: 'PATCH', path: `${SECRETS}/target`, contentType: 'application/json-patch+json',
        body: JSON.stringify([{ op: 'add', path: '/x', value: JSON.parse(jsonDeep(900, 'object')) as unknown }, { op: 'add', path: '/y', value: {} },
          { op: 'move', from: '/x', path: '/y/a' }, { op: 'copy', from: '/y', path: `/y${'/a'.repeat(800)}` }]) },
      [422], /would exceed max depth of 1000/],
      ['managedFields spelling gigabytes of paths', { method: 'POST', path: SECRETS, contentType: 'application/json',
        body: JSON.stringify({ metadata: { name: name(), managedFields: [{ manager: 'm', operation: 'Update', apiVersion: 'v1', fieldsType: 'FieldsV1',
          fieldsV1: { [`f:${'n'.repeat(1_000_000)}`]: Object.fromEntries(Array.from({ length: 100_000 }, (_, i) => [`f:${i}`, {}])) } }] } }) },
      [422], /spells out more than 16777216 characters of field paths/],
      ['a 3 MB YAML of 1.5 million list items', { method: 'POST', path: SECRETS, contentType: 'application/yaml', body: `metadata: {name: ${name()}}\nx: [${'1,'.repeat(1_400_000)}1]\n` },
      [413], /could not be decoded within|needs more than \d+ MiB of memory/],
      ['YAML with 1,001 aliases', { method: 'POST', path: SECRETS, contentType: 'application/yaml',
        body: `metadata: {name: ${name()}}\na: &a 1\nx: [${Array(1001).fill('*a').join(', ')}]\n` },
      [400], /document contains excessive aliasing: more than 1000 aliases/],
      ['YAML with two documents', { method: 'POST', path: SECRETS, contentType: 'application/yaml', body: `metadata: {name: a}\n---\nmetadata: {name: b}\n` },
      [400], /multiple documents/],
      ['YAML with a duplicate key', { method: 'POST', path: SECRETS, contentType: 'application/yaml', body: `metadata: {name: dup}\nmetadata: {name: dup2}\n` },
      [400], /Map keys must be unique at line 2/],
      ['a body over the size limit', { method: 'POST', path: SECRETS, contentType: 'application/yaml', body: `x: "${'a'.repeat(3 * 1024 * 1024)}"` },
      [413], /Request entity too large: limit is 3145728/],
    ];
    for (const [label, req, codes, limit] of fixed) {
      const r = await send(req);
      tally(label, r);
      assertRefused(label, r, codes, limit);
    }
    // 100,000 unknown fields: stored (kube drops them), with kube's truncated Warning header.
    const unknown = await send({ method: 'POST', path: SECRETS, contentType: 'application/json',
      body: JSON.stringify({ metadata: { name: name() }, ...Object.fromEntries(Array.from({ length: 100_000 }, (_, i) => [`u${i}`, i])) }) });
    tally('100,000 unknown fields', unknown);
    assertAccepted('100,000 unknown fields', unknown);
    const warnings = [unknown.headers['warning'] ?? []].flat().join(', ');
    assert.ok(warnings.length > 0 && warnings.length < 40_000, `Warning header of ${warnings.length} characters`);

    await bystander.stop();
    assert.deepEqual(bystander.failures, [], 'the bystander client saw failures');
    assert.ok(bystander.ok > 0);
    const after = await send({ method: 'POST', path: SECRETS, contentType: 'application/yaml', body: `metadata: {name: after-fuzz}\ndata: {v: dmFsdWU=}\n` });
    assert.equal(after.status, 201, after.text);
    assert.equal((await apiRequest(server, 'GET', '/readyz', { token: null })).status, 200);
    const hwm = vmHwmMb(serve.pid as number);
    assert.ok(hwm < MAX_VMHWM_MB, `server peak RSS ${hwm} MB`);
    report('fuzz-bodies', { runsPerProperty: RUNS, statusesByCase: counts, bystanderRequestsOk: bystander.ok, bystanderFailures: 0, vmHwmMb: hwm });
  } finally {
    await bystander?.stop();
    await serve.stop();
  }
});
