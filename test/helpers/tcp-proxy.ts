// A loopback TCP proxy for fault injection: forwards to a target port and can cut every open
// connection at once (the client sees its server vanish and reconnects through the proxy).
import { createConnection, createServer, type Server, type Socket } from 'node:net';

export interface TcpProxy {
  /** `http://127.0.0.1:<port>` of the proxy. */
  readonly url: string;
  readonly port: number;
  /** How many client connections were accepted so far. */
  connections(): number;
  /** Destroys every open connection (both sides); new connections are still accepted. */
  dropConnections(): void;
  /**
   * The next bytes the server sends are not delivered: every connection is cut instead. After a
   * request, this loses its response although the server acted on it (an ambiguous failure).
   */
  dropNextResponse(): void;
  close(): Promise<void>;
}

export async function startTcpProxy(targetPort: number, targetHost = '127.0.0.1'): Promise<TcpProxy> {
  const open = new Set<Socket>();
  let accepted = 0;
  let dropArmed = false;
  const dropAll = () => {
    for (const s of open) s.destroy();
    open.clear();
  };
  const server: Server = createServer((client) => {
    accepted++;
    const upstream = createConnection({ port: targetPort, host: targetHost });
    open.add(client);
    open.add(upstream);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      open.delete(client);
      open.delete(upstream);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.pipe(upstream);
    upstream.on('data', (chunk: Buffer) => {
      if (dropArmed) {
        dropArmed = false;
        dropAll();
        return;
      }
      client.write(chunk);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    connections: () => accepted,
    dropConnections: dropAll,
    dropNextResponse: () => {
      dropArmed = true;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of open) s.destroy();
        open.clear();
        server.close(() => resolve());
      }),
  };
}
