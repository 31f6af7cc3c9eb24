/**
 * Real UDP traffic from the lab's client namespace: `udpRequests` runs dist/lab/udp-client.js
 * there (one process, a new socket per query) against the backends' UDP echo, and counts which
 * backend answered and which client address it saw.
 */
import { join } from 'node:path';
import { LbError } from '../errors.js';
import { exec } from './exec.js';
import { REPO_ROOT } from './lab.js';
import type { ClientRequestsResult, ClientSide } from './client.js';

export const UDP_CLIENT_JS = join(REPO_ROOT, 'dist/lab/udp-client.js');

/** Same shape as the HTTP client's: which backend answered, which client address it saw. */
export type UdpRequestsResult = ClientRequestsResult;

export async function udpRequests(
  lab: ClientSide,
  addr: string,
  port: number,
  count: number,
  opts: { concurrency?: number; timeoutMs?: number } = {},
): Promise<UdpRequestsResult> {
  const concurrency = opts.concurrency ?? 10;
  const timeoutMs = opts.timeoutMs ?? 2000;
  const argv = [
    process.execPath, UDP_CLIENT_JS, '--addr', addr, '--port', String(port), '--count', String(count),
    '--concurrency', String(concurrency), '--timeout-ms', String(timeoutMs),
  ];
  // Bound for the whole batch: every wave may time out, plus start-up slack.
  const r = await exec(lab.client, argv, { allowFail: true, timeoutMs: Math.ceil(count / concurrency) * (timeoutMs + 100) + 10_000 });
  if (r.status !== 0) {
    throw new LbError('ERR_LB_LAB', `udp client failed (exit ${r.status ?? r.signal ?? '?'}): ${r.stderr.trim()}`);
  }
  const res = JSON.parse(r.stdout) as Omit<UdpRequestsResult, 'total'>;
  return { total: count, ...res };
}
