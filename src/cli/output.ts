/**
 * Output for people: aligned tables and the ipvsadm-like service listing. Handlers return data;
 * only src/cli/main.ts decides between these and JSON.
 */
import type { BackendView, ServiceView } from '../daemon/daemon.js';

export function table(rows: string[][], opts: { indent?: string } = {}): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows
    .map((r) => (opts.indent ?? '') + r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ').trimEnd())
    .join('\n');
}

export function human(n: number): string {
  if (n < 1000) return String(n);
  const units = ['K', 'M', 'G', 'T', 'P'];
  let v = n;
  let u = -1;
  while (v >= 1000 && u < units.length - 1) {
    v /= 1000;
    u++;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)}${units[u]}`;
}

/** `addr:port`, IPv6 as `[addr]:port` (RFC 3986), as everywhere lbctl prints or reads one. */
export function hostPort(address: string, port: number): string {
  return `${address.includes(':') ? `[${address}]` : address}:${port}`;
}

function backendAddr(svc: ServiceView, b: BackendView): string {
  return hostPort(b.address, b.port ?? svc.port);
}

function healthCell(b: BackendView): string {
  if (b.weight === 0 && b.health.state === 'up') return 'drain';
  return b.health.state + (b.excluded && b.excluded !== 'drain' && b.excluded !== b.health.state ? `(${b.excluded})` : '');
}

/** The `lbctl list` view, in the spirit of `ipvsadm -L -n`. */
export function formatServices(services: ServiceView[], opts: { stats?: boolean; rate?: boolean } = {}): string {
  if (!services.length) return 'no services configured';
  const head = ['Prot', 'LocalAddress:Port', 'Mode', 'Weight', 'Health', 'Ring', 'ActFlows'];
  if (opts.stats) head.push('Packets', 'Bytes', 'NewFlows');
  if (opts.rate) head.push('PPS', 'BPS', 'NewFlows/s');
  const rows: string[][] = [head, ['  -> RemoteAddress:Port']];
  for (const s of services) {
    const flows = s.backends.reduce((a, b) => a + b.flows.active, 0);
    const row = [
      s.proto.toUpperCase(),
      hostPort(s.vip, s.port),
      s.mode + (s.hashSourceOnly ? ' sh' : ''),
      '',
      `${s.usableBackends}/${s.backends.length} up`,
      '',
      String(flows),
    ];
    if (opts.stats) row.push(human(s.stats?.packets ?? 0), human(s.stats?.bytes ?? 0), human(s.stats?.newFlows ?? 0));
    if (opts.rate) row.push(human(s.rate?.pps ?? 0), human(s.rate?.bps ?? 0), human(s.rate?.newFlowsPerSec ?? 0));
    rows.push(row);
    for (const b of s.backends) {
      const r = [
        '  ->',
        backendAddr(s, b),
        '',
        String(b.weight),
        healthCell(b),
        `${(b.share * 100).toFixed(1)}%`,
        String(b.flows.active),
      ];
      if (opts.stats) r.push(human(b.stats?.packets ?? 0), human(b.stats?.bytes ?? 0), human(b.stats?.newFlows ?? 0));
      if (opts.rate) r.push(human(b.rate?.pps ?? 0), human(b.rate?.bps ?? 0), human(b.rate?.newFlowsPerSec ?? 0));
      rows.push(r);
    }
  }
  // The "-> RemoteAddress" legend shares the first two columns.
  const legend = rows.splice(1, 1)[0]!;
  const out = table(rows).split('\n');
  out.splice(1, 0, legend.join(''));
  return out.join('\n');
}
