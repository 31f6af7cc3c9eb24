/**
 * A UDP client for the lab, run inside the client namespace by udpRequests() (udp.ts):
 *
 *   node dist/lab/udp-client.js --addr VIP --port N --count N [--concurrency N] [--timeout-ms N]
 *
 * Sends `whoami` from a new socket per query (so every query is a new flow) to the lab backends'
 * UDP echo, which answers with a JSON line naming the backend and the client address it saw. Each
 * socket is connect()ed to addr:port, so the kernel delivers only replies whose source is exactly
 * that: a reply that was not translated back (from the backend's own address) counts as a timeout.
 * Prints one JSON object: { ok, failed, byBackend, clientAddrs, failures, elapsedMs }.
 */
import { createSocket } from 'node:dgram';
import { isIP } from 'node:net';
import { parseArgs } from 'node:util';

interface One {
  ok: boolean;
  backend?: string;
  client?: string;
  error?: string;
}

function fail(msg: string): never {
  process.stderr.write(`udp-client: ${msg}\n`);
  process.exit(2);
}

function num(v: string | undefined, dflt: number, lo: number, hi: number, what: string): number {
  const n = v === undefined ? dflt : Number(v);
  if (!Number.isInteger(n) || n < lo || n > hi) fail(`${what}: ${v} is not an integer in ${lo}..${hi}`);
  return n;
}

function query(addr: string, port: number, timeoutMs: number): Promise<One> {
  return new Promise((resolve) => {
    const sock = createSocket(isIP(addr) === 6 ? 'udp6' : 'udp4');
    let done = false;
    const finish = (r: One): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.close();
      resolve(r);
    };
    const timer = setTimeout(() => finish({ ok: false, error: 'timeout' }), timeoutMs);
    sock.on('error', (e) => finish({ ok: false, error: e.message }));
    sock.on('message', (msg) => {
      try {
        const j = JSON.parse(msg.toString('utf8')) as { backend?: string; client?: string };
        if (!j.backend) throw new Error('no backend');
        finish({ ok: true, backend: j.backend, client: j.client ?? '' });
      } catch {
        finish({ ok: false, error: 'unexpected reply' });
      }
    });
    sock.connect(port, addr, () => sock.send('whoami'));
  });
}

async function main(): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        addr: { type: 'string' },
        port: { type: 'string' },
        count: { type: 'string' },
        concurrency: { type: 'string' },
        'timeout-ms': { type: 'string' },
      },
      strict: true,
    }));
  } catch (e) {
    fail((e as Error).message);
  }
  const addr = values.addr ?? '';
  if (isIP(addr) === 0) fail(`--addr: ${JSON.stringify(addr)} is not an IP address`);
  const port = num(values.port, 0, 1, 65535, '--port');
  const count = num(values.count, 1, 1, 10_000, '--count');
  const concurrency = num(values.concurrency, 10, 1, 100, '--concurrency');
  const timeoutMs = num(values['timeout-ms'], 2000, 1, 10_000, '--timeout-ms');

  const started = Date.now();
  const out = { ok: 0, failed: 0, byBackend: {} as Record<string, number>, clientAddrs: {} as Record<string, number>, failures: {} as Record<string, number>, elapsedMs: 0 };
  const bump = (m: Record<string, number>, k: string): void => {
    m[k] = (m[k] ?? 0) + 1;
  };
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      next++;
      const r = await query(addr, port, timeoutMs);
      if (r.ok) {
        out.ok++;
        bump(out.byBackend, r.backend ?? '');
        bump(out.clientAddrs, r.client ?? '');
      } else {
        out.failed++;
        bump(out.failures, r.error ?? 'error');
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  out.elapsedMs = Date.now() - started;
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

main().catch((e: unknown) => fail(e instanceof Error ? e.message : String(e)));
