/**
 * The end-to-end check of a running lab, through any HostRunner: for every DSR service, N real HTTP
 * requests from the client host (client.ts), then the verdict test/e2e asserts for the namespace lab:
 * every request answered, every backend of the service answered and none other, each backend's share
 * within 0.6/n..1.4/n (three backends: 20-47%), and every backend saw the client's own address.
 * `node dist/lab/check.js` runs it against the namespace lab or the Vagrant lab.
 */
import { clientRequests, type ClientRequestsResult } from './client.js';
import { LbError } from '../errors.js';
import type { HostRunner } from './hosts.js';
import type { MachineService, MachineTopology } from './export.js';

export const DSR_MODES: readonly string[] = ['l2dsr', 'ipip'];

export interface ServiceVerdict {
  service: MachineService;
  /** why it was not checked (not a DSR service, no backends); null when checked */
  skipped: string | null;
  result: ClientRequestsResult | null;
  /** empty when it passed */
  problems: string[];
}

export interface CheckReport {
  via: string;
  client: string;
  clientAddr: string;
  requests: number;
  services: ServiceVerdict[];
  passed: number;
  failed: number;
  skipped: number;
}

export interface CheckOptions {
  /** requests per service. Default 300. */
  requests?: number;
  /** in flight at once. Default 10. */
  concurrency?: number;
}

/** Inclusive bounds on one backend's answers when `n` backends share `total`. */
export function shareBounds(n: number, total: number): [number, number] {
  return [Math.floor((0.6 * total) / n), Math.ceil((1.4 * total) / n)];
}

/** What is wrong with one service's answers (empty: nothing). */
export function judge(service: MachineService, res: ClientRequestsResult, clientAddr: string): string[] {
  const problems: string[] = [];
  if (res.ok !== res.total) problems.push(`${res.failed} of ${res.total} requests failed: ${JSON.stringify(res.failures)}`);
  const answered = Object.keys(res.byBackend).sort();
  const silent = service.backends.filter((b) => !answered.includes(b));
  const strangers = answered.filter((b) => !service.backends.includes(b));
  if (silent.length > 0) problems.push(`never answered: ${silent.join(', ')}`);
  if (strangers.length > 0) problems.push(`answered but not a backend of this service: ${strangers.join(', ')}`);
  if (res.ok > 0 && service.backends.length > 0) {
    const [lo, hi] = shareBounds(service.backends.length, res.ok);
    for (const [name, n] of Object.entries(res.byBackend)) {
      if (service.backends.includes(name) && (n < lo || n > hi)) problems.push(`${name} got ${n} of ${res.ok} (want ${lo}-${hi})`);
    }
  }
  const seen = Object.keys(res.clientAddrs);
  if (res.ok > 0 && (seen.length !== 1 || seen[0] !== clientAddr)) {
    problems.push(`backends saw ${seen.join(', ')} instead of the client's address ${clientAddr}`);
  }
  return problems;
}

export async function checkLab(mt: MachineTopology, runner: HostRunner, opts: CheckOptions = {}): Promise<CheckReport> {
  const client = mt.hosts.find((h) => h.role === 'client');
  const clientAddr = client?.interfaces[0]?.addr;
  if (!client || !clientAddr) throw new LbError('ERR_LB_LAB', 'the lab topology has no client');
  const requests = opts.requests ?? 300;
  const report: CheckReport = { via: runner.via, client: client.name, clientAddr, requests, services: [], passed: 0, failed: 0, skipped: 0 };
  for (const service of mt.services) {
    let skipped: string | null = null;
    if (!DSR_MODES.includes(service.mode)) skipped = `${service.mode} is not a DSR mode`;
    else if (service.backends.length === 0) skipped = 'no backends in this lab';
    // The machine description carries IPv4 addresses only (no client IPv6 address to compare with).
    else if (service.vip.includes(':')) skipped = 'an IPv6 VIP (test/e2e/dsr6 checks those in the namespace lab)';
    if (skipped !== null) {
      report.services.push({ service, skipped, result: null, problems: [] });
      report.skipped++;
      continue;
    }
    const result = await clientRequests({ client: client.name }, service.vip, service.port, requests, {
      concurrency: opts.concurrency ?? 10,
      runner,
    });
    const problems = judge(service, result, clientAddr);
    report.services.push({ service, skipped: null, result, problems });
    if (problems.length === 0) report.passed++;
    else report.failed++;
  }
  return report;
}

/** The report for people: per service the spread and the client address, then a closing line. */
export function formatCheckReport(r: CheckReport): string {
  const out: string[] = [];
  for (const v of r.services) {
    const s = v.service;
    const what = `${s.vip}:${s.port}/${s.proto} (${s.mode})`;
    if (v.skipped !== null || v.result === null) {
      out.push(`check: ${what}: skipped, ${v.skipped ?? 'not run'}`);
      continue;
    }
    const res = v.result;
    out.push(`check: ${res.total} HTTP requests from ${r.client} to ${what}, via ${r.via}`);
    const seen = Object.keys(res.clientAddrs);
    out.push(`  answered ${res.ok}/${res.total} in ${res.elapsedMs} ms; backends saw client ${seen.length > 0 ? seen.join(', ') : '(none)'}`);
    for (const name of [...new Set([...s.backends, ...Object.keys(res.byBackend)])].sort()) {
      const n = res.byBackend[name] ?? 0;
      const pct = res.ok > 0 ? (n / res.ok) * 100 : 0;
      out.push(`  ${name.padEnd(8)} ${String(n).padStart(5)}  ${'#'.repeat(Math.round(pct * 0.6))} ${pct.toFixed(0)}%`);
    }
    out.push(v.problems.length === 0 ? '  PASS' : v.problems.map((p) => `  FAIL: ${p}`).join('\n'));
  }
  out.push(`check: ${r.passed} services passed, ${r.failed} failed, ${r.skipped} skipped (via ${r.via})`);
  return out.join('\n') + '\n';
}
