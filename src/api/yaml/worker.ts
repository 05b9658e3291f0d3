// The YAML decoder's worker thread: decodes one text per message (decode.ts) and answers with the
// JSON text or the reason it was refused. Started by decoder.ts with a bounded heap and a stack large
// enough for MAX_NESTING_DEPTH; an unexpected exception is answered too, so the thread never dies
// with a request in it unanswered.
import { parentPort } from 'node:worker_threads';
import { decodeYamlText, type YamlDecodeLimits, type YamlDecodeResult } from './decode.js';

export interface DecodeRequest {
  id: number;
  text: string;
  limits: YamlDecodeLimits;
}

export interface DecodeReply {
  id: number;
  result: YamlDecodeResult;
}

const port = parentPort;
if (port) {
  port.on('message', (req: DecodeRequest) => {
    let result: YamlDecodeResult;
    try {
      result = decodeYamlText(req.text, req.limits);
    } catch (err) {
      const reason = err instanceof Error ? (err.message.split('\n')[0] ?? '') : 'invalid document';
      result = { ok: false, kind: 'syntax', reason };
    }
    port.postMessage({ id: req.id, result } satisfies DecodeReply);
  });
  // Loaded: the decoder starts the clock of a body from here, not from the thread's start-up.
  port.postMessage('ready');
}
