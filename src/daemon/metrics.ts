/**
 * Prometheus metrics (prom-client): read from the per-CPU counters at scrape time, so a scrape
 * costs a map read per service and backend and nothing runs between scrapes. Off unless the
 * config asks for it; the config only accepts an explicit listen address.
 */
import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { Daemon } from './daemon.js';
import type { Logger } from './logger.js';
import { VERSION } from '../version.js';

export function metricsRegistry(d: Daemon): Registry {
  const reg = new Registry();
  collectDefaultMetrics({ register: reg, prefix: 'xdplb_daemon_' });
  // One snapshot per scrape, shared by every metric's collect().
  let snap: ReturnType<Daemon['metricsSnapshot']> | undefined;
  let snapAt = 0;
  const get = (): ReturnType<Daemon['metricsSnapshot']> => {
    if (!snap || Date.now() - snapAt > 250) {
      snap = d.metricsSnapshot();
      snapAt = Date.now();
    }
    return snap;
  };
  const svcLabels = ['service', 'vip', 'port', 'proto', 'mode'] as const;
  const beLabels = [...svcLabels, 'backend'] as const;
  const sl = (s: { name: string; vip: string; port: number; proto: string; mode: string }) => ({
    service: s.name,
    vip: s.vip,
    port: String(s.port),
    proto: s.proto,
    mode: s.mode,
  });

  // Counters that only the data path increments: reset and re-fill from the maps on each scrape.
  const counter = (name: string, help: string, labels: readonly string[], fill: (c: Counter<string>) => void) =>
    new Counter({
      name,
      help,
      labelNames: labels,
      registers: [reg],
      collect() {
        this.reset();
        fill(this);
      },
    });
  const gauge = (name: string, help: string, labels: readonly string[], fill: (g: Gauge<string>) => void) =>
    new Gauge({
      name,
      help,
      labelNames: labels,
      registers: [reg],
      collect() {
        this.reset();
        fill(this);
      },
    });

  for (const [field, what] of [
    ['packets', 'packets'],
    ['bytes', 'bytes'],
    ['newFlows', 'new flows'],
  ] as const) {
    const metric = field === 'newFlows' ? 'new_flows' : field;
    counter(`xdplb_service_${metric}_total`, `Client-to-backend ${what} forwarded per service`, svcLabels, (c) => {
      for (const s of get().services) if (s.stats) c.inc(sl(s.svc), Number(s.stats[field]));
    });
    counter(`xdplb_backend_${metric}_total`, `Client-to-backend ${what} forwarded per backend`, beLabels, (c) => {
      for (const b of get().backends) if (b.stats) c.inc({ ...sl(b.svc), backend: b.b.address }, Number(b.stats[field]));
    });
  }
  counter('xdplb_verdicts_total', 'Data-path verdicts by reason (enum lb_reason)', ['reason'], (c) => {
    for (const [reason, v] of Object.entries(get().reasons)) c.inc({ reason }, Number(v));
  });
  gauge('xdplb_backend_up', '1 when the backend is healthy (or has no check), 0 otherwise', beLabels, (g) => {
    for (const b of get().backends) g.set({ ...sl(b.svc), backend: b.b.address }, b.state === 'up' ? 1 : 0);
  });
  gauge('xdplb_backend_weight', 'Configured weight (0 = draining)', beLabels, (g) => {
    for (const b of get().backends) g.set({ ...sl(b.svc), backend: b.b.address }, b.weight);
  });
  gauge('xdplb_backend_active_flows', 'Flows seen within the idle window, from the flow table', beLabels, (g) => {
    for (const b of get().backends) g.set({ ...sl(b.svc), backend: b.b.address }, b.flows.active);
  });
  gauge('xdplb_service_usable_backends', 'Backends in the ring; 0 means new flows are dropped or passed', svcLabels, (g) => {
    for (const s of get().services) g.set(sl(s.svc), s.usable);
  });
  const info = new Gauge({ name: 'xdplb_daemon_info', help: 'Daemon version', labelNames: ['version'], registers: [reg] });
  info.set({ version: VERSION }, 1);
  return reg;
}

export async function startMetrics(d: Daemon, listen: string, port: number, log: Logger): Promise<Server> {
  const reg = metricsRegistry(d);
  const server = createServer((req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end('try /metrics\n');
      return;
    }
    reg.metrics().then(
      (text) => {
        res.writeHead(200, { 'content-type': reg.contentType });
        res.end(text);
      },
      (e: unknown) => {
        log.error({ component: 'metrics', err: e }, 'scrape failed');
        res.writeHead(500).end();
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, listen, () => resolve());
  });
  log.info({ component: 'metrics', listen, port }, 'metrics listening');
  return server;
}
