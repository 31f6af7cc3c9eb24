/**
 * The daemon's API: HTTP+JSON on a Unix socket that only root can open (mode 0600 in a 0700
 * directory, so the kernel's permission check is the access control). Every lbctl command goes
 * through here; handlers call the daemon and return data, errors become `{ error }` bodies.
 */
import { chmodSync, existsSync, mkdirSync, unlinkSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect } from 'node:net';
import { dirname } from 'node:path';
import { LbError } from '../errors.js';
import type { Daemon, EditOp } from '../daemon/daemon.js';
import type { Logger } from '../daemon/logger.js';
import { toWire } from './protocol.js';

const MAX_BODY = 4 * 1024 * 1024;

type Handler = (req: { params: string[]; query: URLSearchParams; body: unknown }) => unknown | Promise<unknown>;

interface Route {
  method: string;
  pattern: RegExp;
  handler: Handler;
}

function readBody(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new LbError('ERR_LB_USAGE', `request body over ${MAX_BODY} bytes`));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (!chunks.length) return resolve(undefined);
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      } catch {
        reject(new LbError('ERR_LB_USAGE', 'request body is not JSON'));
      }
    });
    req.on('error', reject);
  });
}

function obj(body: unknown, field: string): object {
  const v = (body as Record<string, unknown> | undefined)?.[field];
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new LbError('ERR_LB_USAGE', `request needs an object "${field}"`);
  return v;
}

function routes(d: Daemon, onStop: (detach: boolean) => void): Route[] {
  const flag = (q: URLSearchParams, k: string): boolean => q.get(k) === '1' || q.get(k) === 'true';
  const edit = (op: EditOp) => ({ report: d.edit(op) });
  const S = '([^/]+)';
  return [
    { method: 'GET', pattern: /^\/v1\/status$/, handler: () => d.status() },
    {
      method: 'GET',
      pattern: /^\/v1\/services$/,
      handler: ({ query }) => d.list({ stats: flag(query, 'stats'), rate: flag(query, 'rate') }),
    },
    {
      method: 'GET',
      pattern: new RegExp(`^/v1/services/${S}$`),
      handler: ({ params, query }) => d.list({ service: params[0]!, stats: flag(query, 'stats'), rate: flag(query, 'rate') })[0],
    },
    {
      method: 'GET',
      pattern: /^\/v1\/nat$/,
      handler: ({ query }) => {
        const limit = Number(query.get('limit') ?? 1000);
        if (!Number.isInteger(limit) || limit < 0 || limit > 1_000_000) throw new LbError('ERR_LB_USAGE', `limit ${query.get('limit')}: want 0 to 1000000`);
        return d.natConnections(limit);
      },
    },
    { method: 'GET', pattern: /^\/v1\/stats$/, handler: () => ({ services: d.list({ stats: true, rate: true }), reasons: d.reasons() }) },
    {
      method: 'POST',
      pattern: /^\/v1\/apply$/,
      handler: ({ body }) => {
        const text = (body as { text?: unknown } | undefined)?.text;
        if (typeof text !== 'string') throw new LbError('ERR_LB_USAGE', 'request needs "text": the config file content');
        return { report: d.applyText(text) };
      },
    },
    { method: 'POST', pattern: /^\/v1\/reload$/, handler: () => ({ report: d.reload() }) },
    { method: 'POST', pattern: /^\/v1\/services$/, handler: ({ body }) => edit({ op: 'service-add', raw: obj(body, 'service') }) },
    {
      method: 'PATCH',
      pattern: new RegExp(`^/v1/services/${S}$`),
      handler: ({ params, body }) => edit({ op: 'service-set', service: params[0]!, patch: obj(body, 'patch') }),
    },
    {
      method: 'DELETE',
      pattern: new RegExp(`^/v1/services/${S}$`),
      handler: ({ params }) => edit({ op: 'service-del', service: params[0]! }),
    },
    {
      method: 'POST',
      pattern: new RegExp(`^/v1/services/${S}/backends$`),
      handler: ({ params, body }) => edit({ op: 'backend-add', service: params[0]!, raw: obj(body, 'backend') }),
    },
    {
      method: 'PATCH',
      pattern: new RegExp(`^/v1/services/${S}/backends/${S}$`),
      handler: ({ params, body }) => edit({ op: 'backend-set', service: params[0]!, address: params[1]!, patch: obj(body, 'patch') }),
    },
    {
      method: 'DELETE',
      pattern: new RegExp(`^/v1/services/${S}/backends/${S}$`),
      handler: ({ params }) => edit({ op: 'backend-del', service: params[0]!, address: params[1]! }),
    },
    {
      method: 'GET',
      pattern: new RegExp(`^/v1/services/${S}/backends/${S}/flows$`),
      handler: ({ params }) => d.backendFlows(params[0]!, params[1]!),
    },
    {
      method: 'POST',
      pattern: /^\/v1\/stop$/,
      handler: ({ body }) => {
        const detach = (body as { detach?: unknown } | undefined)?.detach === true;
        setImmediate(() => onStop(detach));
        return { stopping: true, detach };
      },
    },
  ];
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body ?? null);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** Refuse to start over a live daemon's socket; remove a dead one's. */
async function claimSocket(path: string): Promise<void> {
  if (!existsSync(path)) return;
  const alive = await new Promise<boolean>((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
  if (alive) {
    throw new LbError('ERR_LB_API', `another daemon answers on ${path}`, {
      hint: 'one daemon per node: `lbctl status` shows it; stop it with `lbctl stop`',
    });
  }
  unlinkSync(path);
}

export async function startApi(d: Daemon, socketPath: string, log: Logger, onStop: (detach: boolean) => void): Promise<Server> {
  const table = routes(d, onStop);
  mkdirSync(dirname(socketPath), { recursive: true, mode: 0o700 });
  await claimSocket(socketPath);
  const alog = log.child({ component: 'api' });
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://lbctl');
    const route = table.find((r) => r.method === req.method && r.pattern.test(url.pathname));
    if (!route) {
      send(res, 404, { error: { code: 'ERR_LB_API', message: `no such API call: ${req.method} ${url.pathname}` } });
      return;
    }
    const params = (url.pathname.match(route.pattern) ?? []).slice(1).map((p) => decodeURIComponent(p));
    readBody(req)
      .then((body) => route.handler({ params, query: url.searchParams, body }))
      .then(
        (out) => {
          if (req.method !== 'GET') alog.info({ method: req.method, path: url.pathname }, 'change');
          send(res, 200, out);
        },
        (e: unknown) => {
          const w = toWire(e);
          if (w.status >= 500) alog.error({ method: req.method, path: url.pathname, err: e }, 'request failed');
          else alog.info({ method: req.method, path: url.pathname, code: w.body.error.code, msg: w.body.error.message }, 'request refused');
          send(res, w.status, w.body);
        },
      );
  });
  const old = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketPath, () => resolve());
    });
  } finally {
    process.umask(old);
  }
  chmodSync(socketPath, 0o600);
  alog.info({ socket: socketPath }, 'API listening (root only)');
  return server;
}
