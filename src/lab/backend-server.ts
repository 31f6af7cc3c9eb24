/**
 * The real server on every lab backend, started by lab.ts inside the backend's namespace:
 *
 *   node dist/lab/backend-server.js --name NAME --port 80 [--port P ...] [--udp-echo PORT ...]
 *                                   [--ready-file PATH]
 *
 * HTTP (any path, any method): 200 with a one-line JSON body
 *   {"backend":NAME,"client":ADDR,"clientPort":N,"local":ADDR,"localPort":N}
 * and the same facts in headers `X-Lab-Backend` / `X-Lab-Client` (clientRequests reads those), so a
 * test sees which backend answered and which client address it saw (DSR keeps the real one).
 * `GET /bytes/N` (N up to 16 MiB) answers N bytes of 'x' instead of the JSON line, same headers:
 * a body large enough to need full-size segments (the PMTU tests).
 * UDP echo: every datagram comes back unchanged, except `whoami` which gets the JSON line.
 * Listens on :: dual stack (IPv4 clients appear as ::ffff:a.b.c.d and are reported as a.b.c.d), so
 * it answers for IPv4 and IPv6 VIPs on lo too. Logs only start-up and fatal errors; nothing
 * per request. Exits 0 on SIGTERM/SIGINT. Writes `--ready-file` (JSON: pid, ports) once every
 * listener is bound.
 */
import { createServer, type Server } from 'node:http';
import { createSocket, type Socket } from 'node:dgram';
import { writeFileSync, renameSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface Args {
  name: string;
  ports: number[];
  udpEcho: number[];
  readyFile: string | undefined;
}

function fail(msg: string): never {
  process.stderr.write(`backend-server: ${msg}\n`);
  process.exit(2);
}

function parsePort(s: string, what: string): number {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 0 || n > 65535) fail(`${what}: ${s} is not a port`);
  return n;
}

function parse(argv: string[]): Args {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        name: { type: 'string' },
        port: { type: 'string', multiple: true },
        'udp-echo': { type: 'string', multiple: true },
        'ready-file': { type: 'string' },
      },
      strict: true,
    }));
  } catch (e) {
    fail((e as Error).message);
  }
  if (!values.name) fail('--name is required');
  const ports = (values.port ?? ['80']).map((p) => parsePort(p, '--port'));
  const udpEcho = (values['udp-echo'] ?? []).map((p) => parsePort(p, '--udp-echo'));
  return { name: values.name, ports, udpEcho, readyFile: values['ready-file'] };
}

function stripMapped(a: string | undefined): string {
  if (a === undefined) return '';
  return a.startsWith('::ffff:') ? a.slice(7) : a;
}

const MAX_BYTES = 16 * 1024 * 1024;

/** The size a `/bytes/N` path asks for, or undefined for any other path. */
function bytesAsked(url: string | undefined): number | undefined {
  const m = /^\/bytes\/(\d{1,8})$/.exec(url ?? '');
  return m && Number(m[1]) <= MAX_BYTES ? Number(m[1]) : undefined;
}

function listenHttp(name: string, port: number): Promise<Server> {
  const server = createServer((req, res) => {
    const client = stripMapped(req.socket.remoteAddress);
    const size = bytesAsked(req.url);
    const body =
      size !== undefined
        ? Buffer.alloc(size, 'x')
        : JSON.stringify({
            backend: name,
            client,
            clientPort: req.socket.remotePort ?? 0,
            local: stripMapped(req.socket.localAddress),
            localPort: req.socket.localPort ?? 0,
          }) + '\n';
    // Drain any request body; we never look at it.
    req.resume();
    res.writeHead(200, {
      'Content-Type': size !== undefined ? 'application/octet-stream' : 'application/json',
      'Content-Length': Buffer.byteLength(body),
      'X-Lab-Backend': name,
      'X-Lab-Client': client,
    });
    res.end(body);
  });
  server.keepAliveTimeout = 2000;
  server.on('clientError', (_err, socket) => socket.destroy());
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port, host: '::', ipv6Only: false }, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}

function listenUdp(name: string, port: number): Promise<Socket> {
  const sock = createSocket({ type: 'udp6', ipv6Only: false });
  sock.on('message', (msg, rinfo) => {
    const reply =
      msg.toString('utf8').trim() === 'whoami'
        ? Buffer.from(JSON.stringify({ backend: name, client: stripMapped(rinfo.address), clientPort: rinfo.port }) + '\n')
        : msg;
    sock.send(reply, rinfo.port, rinfo.address);
  });
  return new Promise((resolve, reject) => {
    sock.once('error', reject);
    sock.bind({ port, address: '::' }, () => {
      sock.off('error', reject);
      sock.on('error', () => {}); // a send error (e.g. ICMP unreachable) must not kill the server
      resolve(sock);
    });
  });
}

async function main(): Promise<void> {
  const args = parse(process.argv.slice(2));
  const https = await Promise.all(args.ports.map((p) => listenHttp(args.name, p)));
  const udps = await Promise.all(args.udpEcho.map((p) => listenUdp(args.name, p)));

  const stop = (): void => {
    for (const s of https) {
      s.close();
      s.closeAllConnections();
    }
    for (const u of udps) u.close();
    setTimeout(() => process.exit(0), 200).unref();
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);

  const ready = { pid: process.pid, name: args.name, tcp: args.ports, udpEcho: args.udpEcho };
  if (args.readyFile) {
    const tmp = `${args.readyFile}.tmp`;
    writeFileSync(tmp, JSON.stringify(ready) + '\n');
    renameSync(tmp, args.readyFile);
  }
  process.stdout.write(`backend-server ${args.name}: listening ${JSON.stringify(ready)}\n`);
}

main().catch((e: unknown) => {
  fail(e instanceof Error ? e.message : String(e));
});
