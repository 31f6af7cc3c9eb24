/**
 * lbctl's side of the API. Turns socket failures into errors that say what to do: no daemon,
 * not root, or a daemon that stopped answering.
 */
import { request } from 'node:http';
import { LbError } from '../errors.js';
import { DEFAULT_SOCKET, fromWire, type WireError } from './protocol.js';

export function socketPath(opt?: string): string {
  return opt ?? process.env['XDPLB_SOCKET'] ?? DEFAULT_SOCKET;
}

export async function call<T = unknown>(
  socket: string,
  method: string,
  path: string,
  body?: unknown,
  timeoutMs = 30_000,
): Promise<T> {
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise<T>((resolve, reject) => {
    const req = request(
      {
        socketPath: socket,
        method,
        path,
        headers: payload ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {},
        timeout: timeoutMs,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          let parsed: unknown;
          try {
            parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
          } catch {
            reject(new LbError('ERR_LB_API', `the daemon sent a non-JSON answer (HTTP ${res.statusCode})`));
            return;
          }
          if ((res.statusCode ?? 500) >= 400) {
            const err = (parsed as { error?: WireError }).error;
            reject(err ? fromWire(err) : new LbError('ERR_LB_API', `HTTP ${res.statusCode}`));
          } else resolve(parsed as T);
        });
      },
    );
    req.on('timeout', () => req.destroy(new LbError('ERR_LB_API', `the daemon did not answer within ${timeoutMs / 1000} s`)));
    req.on('error', (e: NodeJS.ErrnoException) => {
      if (e instanceof LbError) return reject(e);
      if (e.code === 'ENOENT' || e.code === 'ECONNREFUSED') {
        reject(
          new LbError('ERR_LB_API', `no daemon is listening on ${socket}`, {
            errno: e.code,
            hint: 'start it with `lbctl daemon --config FILE` (or systemctl start xdplb), or pass --socket',
          }),
        );
      } else if (e.code === 'EACCES' || e.code === 'EPERM') {
        reject(new LbError('ERR_LB_API', `permission denied on ${socket}`, { errno: e.code, hint: 'the API is root-only: run lbctl as root (sudo)' }));
      } else reject(new LbError('ERR_LB_API', `API call ${method} ${path} failed: ${e.message}`, { errno: e.code, cause: e }));
    });
    if (payload) req.write(payload);
    req.end();
  });
}

export const enc = encodeURIComponent;
