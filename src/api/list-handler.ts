// The list verb, read in pages at one revision: a paginated or Table list is collected, an
// unpaginated one is streamed (after the range is known to be readable, KEP-3926). Split from
// resource-handlers.ts, which delegates `list` here; watch.ts uses listAll for its initial state.
import { decodeContinue, encodeContinue, type ContinueToken } from './continue-token.js';
import { CorruptObjects, corruptListError } from './corrupt-objects.js';
import { badRequest } from './errors.js';
import type { ListPage, ObjectRepository } from './object-repository.js';
import type { KubeObject } from './objects.js';
import type { Reply, ResourceRequest } from './resource-handlers.js';
import { parseFieldSelector, parseLabelSelector, type Matcher } from './selectors.js';
import { tableOf } from './table.js';

export const TABLE_CONTENT_TYPE = 'application/json;as=Table;v=v1;g=meta.k8s.io';

/**
 * A JSON body written piece by piece: an unpaginated list of every Secret must not be built whole in
 * memory (100,000 objects would be hundreds of MB of objects and one huge string). `write` resolves
 * when the connection can take more.
 */
export class StreamedBody {
  constructor(readonly writeTo: (write: (chunk: string) => Promise<void>) => Promise<void>) {}
}

/** Objects read from the store per page when a list is streamed or collected. */
export const LIST_STREAM_PAGE = 500;
/** A streamed list is written once this much JSON text has accumulated. */
const STREAM_CHUNK_CHARS = 64 * 1024;
/**
 * How much JSON text of an unpaginated list is held before the first byte is sent (see
 * streamedList): lists up to this size are read once; larger ones are scanned for corrupt values first.
 */
export const STREAM_BUFFER_CHARS = 16 * 1024 * 1024;

/** Items carry no kind/apiVersion inside a list, as kube-apiserver's. */
function listItem({ kind: _k, apiVersion: _a, ...rest }: KubeObject): Omit<KubeObject, 'kind' | 'apiVersion'> {
  return rest;
}

interface ListQuery {
  /** The label and field selectors, parsed once (selectorsOf). */
  matches: Matcher;
  /** 0: no limit. */
  limit: number;
  token?: ContinueToken;
}

/** The request's labelSelector and fieldSelector as one matcher (400 for a bad one). */
export function selectorsOf(req: ResourceRequest): Matcher {
  const labels = parseLabelSelector(req.query.get('labelSelector'));
  const fields = parseFieldSelector(req.query.get('fieldSelector'), req.rt.kind);
  return (o) => labels(o) && fields(o);
}

function listQuery(req: ResourceRequest): ListQuery {
  const { query } = req;
  const limitRaw = query.get('limit');
  const limit = limitRaw ? Number.parseInt(limitRaw, 10) : 0;
  if (Number.isNaN(limit) || limit < 0) throw badRequest(`invalid limit ${JSON.stringify(limitRaw)}`);
  const cont = query.get('continue');
  return {
    matches: selectorsOf(req),
    limit,
    ...(cont ? { token: decodeContinue(cont) } : {}),
  };
}

export interface ListHandlerDeps {
  repo: ObjectRepository;
  now: () => number;
  /** STREAM_BUFFER_CHARS unless given (tests make it small to reach the scan-then-stream path). */
  listBufferChars?: number;
}

export class ListHandler {
  private readonly repo: ObjectRepository;
  private readonly now: () => number;
  private readonly listBufferChars: number;

  constructor(deps: ListHandlerDeps) {
    this.repo = deps.repo;
    this.now = deps.now;
    this.listBufferChars = deps.listBufferChars ?? STREAM_BUFFER_CHARS;
  }

  async list(req: ResourceRequest): Promise<Reply> {
    const { rt } = req;
    const q = listQuery(req);
    if (q.limit === 0 && !req.wantTable) return this.streamedList(req, q);
    const { items, revision, after, more } = await this.collect(req, q);
    const listMeta: { resourceVersion: string; continue?: string } = { resourceVersion: String(revision) };
    if (more && after !== undefined) listMeta.continue = encodeContinue({ revision, after });
    if (req.wantTable) {
      const now = this.now();
      return { code: 200, body: tableOf(rt.columns, (o) => rt.cells(o, now), items, listMeta), contentType: TABLE_CONTENT_TYPE };
    }
    const bare = items.map(listItem);
    return { code: 200, body: { kind: rt.listKind, apiVersion: rt.apiVersion, metadata: listMeta, items: bare } };
  }

  /** Every object `matches` accepts, at one revision (a watch's initial state; the watch parsed its selectors). */
  async listAll(req: ResourceRequest, matches: Matcher): Promise<{ revision: number; items: KubeObject[] }> {
    const { items, revision } = await this.collect(req, { matches, limit: 0 });
    return { revision, items };
  }

  /**
   * Reads pages at one revision until `limit` matching objects (0: all of them) are collected. A
   * corrupt value (KEP-3926) does not stop the reading: the range is read to its end and the request
   * fails with one StoreReadError naming every corrupt object found (at most 100).
   */
  private async collect(req: ResourceRequest, q: ListQuery): Promise<{ items: KubeObject[]; revision: number; after?: string; more: boolean }> {
    const items: KubeObject[] = [];
    const corrupt = new CorruptObjects();
    let matched = 0;
    let revision = q.token?.revision;
    let after = q.token?.after;
    let more = false;
    for (;;) {
      const page = await this.repo.list(req.rt, req.namespace, {
        limit: q.limit > 0 ? q.limit - matched : LIST_STREAM_PAGE,
        ...(after !== undefined ? { after } : {}),
        ...(revision !== undefined ? { revision } : {}),
        collectCorrupt: true,
      });
      revision = page.revision;
      for (const c of page.corrupt) corrupt.add(c);
      for (const it of page.items) {
        if (!q.matches(it.obj)) continue;
        matched++;
        // Once the request is failing, objects are not kept: the range is only read for its corrupt keys.
        if (corrupt.size === 0) items.push(it.obj);
      }
      after = page.lastKey ?? after;
      more = page.more;
      // The range ends where kube's does: after `limit` readable matches (or at the end); corrupt values do not count.
      if (!more || (q.limit > 0 && matched >= q.limit) || corrupt.truncated) break;
    }
    if (corrupt.size > 0) throw corruptListError(req.rt.resource, corrupt);
    return { items, revision, ...(after !== undefined ? { after } : {}), more };
  }

  /**
   * The whole list (no `limit`), read in pages of LIST_STREAM_PAGE at one revision.
   *
   * Corrupt values and the status code: once a 200 has started, a Status can no longer be sent, and
   * a client must never take a short list for a whole one. So the reply starts only when the range
   * is known to be readable:
   * - The JSON of the items is built page by page into memory up to STREAM_BUFFER_CHARS. A list that
   *   fits (the usual case) is read once: a corrupt value anywhere in it gives the 500 naming every
   *   corrupt key, otherwise the buffered text is sent.
   * - A larger list would not fit in memory (100,000 Secrets must stay far below 200 MB): its rest
   *   is first scanned (decrypted and decoded, nothing kept but corrupt keys), then, if clean,
   *   streamed by reading those pages again at the same revision. Only lists beyond the buffer pay
   *   the second decryption of their remainder.
   * - Values at a revision do not change, but the transformers can (a reload that drops a key, a
   *   KMS outage between scan and stream): a failure while streaming still ends the response early
   *   (server.ts destroys the connection), which a client sees as a failed request, never a short list.
   */
  private async streamedList(req: ResourceRequest, q: ListQuery): Promise<Reply> {
    const { rt, namespace } = req;
    const { matches, token } = q;
    const corrupt = new CorruptObjects();
    const buffered: string[] = [];
    let bufferedChars = 0;
    let written = 0;
    let chunk = '';
    let page = await this.repo.list(rt, namespace, {
      limit: LIST_STREAM_PAGE,
      ...(token ? { after: token.after, revision: token.revision } : {}),
      collectCorrupt: true,
    });
    const revision = page.revision;
    const render = (p: ListPage, emit: (text: string) => void): void => {
      for (const it of p.items) {
        if (!matches(it.obj)) continue;
        chunk += (written++ === 0 ? '' : ',') + JSON.stringify(listItem(it.obj));
        // Large objects (Secrets up to ~1 MiB): hand the text over in pieces, not a page at once.
        if (chunk.length >= STREAM_CHUNK_CHARS) {
          emit(chunk);
          chunk = '';
        }
      }
    };
    const keep = (text: string): void => {
      buffered.push(text);
      bufferedChars += text.length;
    };
    // Phase 1: read and buffer until the end of the range or the buffer is full.
    for (;;) {
      for (const c of page.corrupt) corrupt.add(c);
      if (corrupt.size === 0) render(page, keep);
      // Stop once the answer is settled: the buffer is full (all readable so far), or the 500 already names as many keys as it will.
      if (!page.more || page.lastKey === undefined || corrupt.truncated || (corrupt.size === 0 && bufferedChars >= this.listBufferChars)) break;
      page = await this.repo.list(rt, namespace, { limit: LIST_STREAM_PAGE, after: page.lastKey, revision, collectCorrupt: true });
    }
    const resumeAfter = page.more ? page.lastKey : undefined;
    // Phase 2 (only past the buffer): scan the rest for corrupt values before anything is sent.
    if (corrupt.size === 0 && resumeAfter !== undefined) {
      for (let after: string | undefined = resumeAfter; after !== undefined && !corrupt.truncated;) {
        const scan = await this.repo.list(rt, namespace, { limit: LIST_STREAM_PAGE, after, revision, collectCorrupt: true });
        for (const c of scan.corrupt) corrupt.add(c);
        after = scan.more ? scan.lastKey : undefined;
      }
    }
    if (corrupt.size > 0) throw corruptListError(rt.resource, corrupt);
    const body = new StreamedBody(async (write) => {
      // Same document as the buffered path: kind, apiVersion, metadata, items (without kind/apiVersion).
      await write(`{"kind":${JSON.stringify(rt.listKind)},"apiVersion":${JSON.stringify(rt.apiVersion)},"metadata":{"resourceVersion":${JSON.stringify(String(revision))}},"items":[`);
      while (buffered.length > 0) await write(buffered.shift() as string);
      const pending: string[] = [];
      for (let after = resumeAfter; after !== undefined;) {
        const next = await this.repo.list(rt, namespace, { limit: LIST_STREAM_PAGE, after, revision });
        render(next, (text) => pending.push(text));
        while (pending.length > 0) await write(pending.shift() as string);
        after = next.more ? next.lastKey : undefined;
      }
      if (chunk !== '') await write(chunk);
      await write(']}');
    });
    return { code: 200, body };
  }
}
