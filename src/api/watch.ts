// Watch: a chunked stream of JSON lines {"type":"ADDED|MODIFIED|DELETED|ERROR","object":...}
// (kubectl.md §3.8). Without a resourceVersion (or "0") the current objects come first as ADDED;
// with one, only changes after it. Selectors decide per event: an object that starts matching is
// ADDED, one that stops matching is DELETED. Under the Table Accept each object is a one-row Table.
// `timeoutSeconds` ends the stream; a compacted resourceVersion gives an ERROR event with 410.
import type { ServerResponse } from 'node:http';
import type { Logger } from '../log.js';
import { isStoreError } from '../storage/errors.js';
import { badRequest } from './errors.js';
import type { KubeObject } from './objects.js';
import type { ObjectRepository } from './object-repository.js';
import { selectorsOf, TABLE_CONTENT_TYPE } from './list-handler.js';
import type { ResourceHandlers, ResourceRequest } from './resource-handlers.js';
import { failureStatus, statusFromError } from './status.js';
import { tableOf } from './table.js';

export interface WatchDeps {
  repo: ObjectRepository;
  handlers: ResourceHandlers;
  log: Logger;
  now?: () => number;
  /** Upper bound of timeoutSeconds (and the default when absent), kube's --min-request-timeout style. */
  maxTimeoutSeconds?: number;
  /** How often a watch with allowWatchBookmarks=true gets a BOOKMARK (default 60 s, like kube). */
  bookmarkIntervalMs?: number;
  /** Open watches end here on shutdown. */
  register(close: () => void): () => void;
}

export function isWatchRequest(query: URLSearchParams): boolean {
  const w = query.get('watch');
  return w !== null && ['true', 'True', '1'].includes(w);
}

export async function serveWatch(req: ResourceRequest, res: ServerResponse, deps: WatchDeps): Promise<void> {
  const { rt } = req;
  const matches = selectorsOf(req);
  const rvRaw = req.query.get('resourceVersion');
  const timeoutRaw = req.query.get('timeoutSeconds');
  const max = deps.maxTimeoutSeconds ?? 1800;
  let timeoutSeconds = timeoutRaw ? Number.parseInt(timeoutRaw, 10) : max;
  if (Number.isNaN(timeoutSeconds) || timeoutSeconds < 0) throw badRequest(`invalid timeoutSeconds ${JSON.stringify(timeoutRaw)}`);
  timeoutSeconds = Math.min(timeoutSeconds || max, max);
  let start: number;
  const initial: KubeObject[] = [];
  if (!rvRaw || rvRaw === '0') {
    // Initial state as synthetic ADDED events, then changes after the list's revision.
    const all = await deps.handlers.listAll(req, matches);
    start = all.revision;
    for (const item of all.items) initial.push({ kind: rt.kind, apiVersion: rt.apiVersion, ...item } as KubeObject);
  } else {
    start = Number(rvRaw);
    if (!Number.isInteger(start) || start < 0) throw badRequest(`invalid resourceVersion ${JSON.stringify(rvRaw)}`);
  }

  res.writeHead(200, {
    'Content-Type': req.wantTable ? TABLE_CONTENT_TYPE : 'application/json',
    'Cache-Control': 'no-cache, private',
    'Transfer-Encoding': 'chunked',
  });
  // Send the headers now: with a resourceVersion there may be no event for a long time, and clients
  // wait for the response before they consider the watch established.
  res.flushHeaders();
  const now = deps.now ?? Date.now;
  const encode = (obj: KubeObject): unknown =>
    req.wantTable ? tableOf(rt.columns, (o) => rt.cells(o, now()), [obj], { resourceVersion: obj.metadata.resourceVersion ?? '' }) : obj;
  const send = (type: string, object: unknown): void => {
    if (!res.writableEnded) res.write(JSON.stringify({ type, object }) + '\n');
  };

  let finished = false;
  let unregister: () => void = () => {};
  const handles: { timer?: NodeJS.Timeout; bookmarks?: NodeJS.Timeout; watch?: { close(): void } } = {};
  const finish = (): void => {
    if (finished) return;
    finished = true;
    if (handles.timer) clearTimeout(handles.timer);
    if (handles.bookmarks) clearInterval(handles.bookmarks);
    handles.watch?.close();
    unregister();
    if (!res.writableEnded) res.end();
  };
  unregister = deps.register(finish);
  res.on('close', finish);
  handles.timer = setTimeout(finish, timeoutSeconds * 1000);
  handles.timer.unref();

  for (const obj of initial) send('ADDED', encode(obj));
  // The newest revision this stream has reached: what a BOOKMARK tells the client to resume from.
  let reached = start;
  if (req.query.get('allowWatchBookmarks') === 'true') {
    handles.bookmarks = setInterval(() => {
      send('BOOKMARK', { kind: rt.kind, apiVersion: rt.apiVersion, metadata: { resourceVersion: String(reached) } });
    }, deps.bookmarkIntervalMs ?? 60_000);
    handles.bookmarks.unref();
  }
  const withKind = (o: KubeObject): KubeObject => ({ ...o, kind: rt.kind, apiVersion: rt.apiVersion });
  const watch = deps.repo.watch(rt, req.namespace, start, {
    onEvent: (e) => {
      if (finished) return;
      reached = Math.max(reached, e.revision);
      if (e.type === 'put') {
        const now = matches(e.obj);
        const before = e.prev ? matches(e.prev) : false;
        if (now) send(e.prev && before ? 'MODIFIED' : 'ADDED', encode(withKind(e.obj)));
        else if (before && e.prev) send('DELETED', encode(withKind({ ...e.prev, metadata: { ...e.prev.metadata, resourceVersion: String(e.revision) } })));
      } else if (e.obj && matches(e.obj)) {
        send('DELETED', encode(withKind(e.obj)));
      }
    },
    onError: (err) => {
      if (finished) return;
      if (isStoreError(err, 'COMPACTED')) {
        send('ERROR', failureStatus(410, 'Expired', `too old resource version: ${start} (${err.compactRevision ?? ''})`));
      } else {
        send('ERROR', statusFromError(err, deps.repo.etcdPrefix, deps.log));
      }
      finish();
    },
    onDecryptError: (err) => {
      // One undecryptable object must not end everyone's watch: report it and go on.
      send('ERROR', statusFromError(err, deps.repo.etcdPrefix, deps.log));
    },
  });
  handles.watch = watch;
  if (finished) watch.close();
}
