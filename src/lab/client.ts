/**
 * Real traffic from the lab's client namespace. `clientRequests` runs N HTTP requests with ONE
 * curl process (`--parallel`, one new TCP connection per request, `--max-time` per request), and
 * counts which backend answered (the backend server's `X-Lab-Backend` header) and which client
 * address it saw (`X-Lab-Client`; DSR must keep the real one). The client is a namespace by default;
 * `opts.runner` reaches it by another way (hosts.ts: ssh for the Vagrant lab).
 */
import { LbError } from '../errors.js';
import { NetnsRunner, type HostRunner } from './hosts.js';

export const MAX_REQUESTS = 10_000;
export const MAX_CONCURRENCY = 100;

export interface ClientRequestsOptions {
  /** requests in flight at once. Default 10. */
  concurrency?: number;
  /** per-request limit in seconds (curl --max-time). Default 2. */
  maxTimeSec?: number;
  /** URL path. Default '/'. */
  path?: string;
  /** how to run curl on the client host. Default: `ip netns exec <lab.client>`. */
  runner?: HostRunner;
}

export interface ClientRequestsResult {
  total: number;
  ok: number;
  failed: number;
  /** successful answers per backend name */
  byBackend: Record<string, number>;
  /** client addresses the backends reported (all should be the client's own address) */
  clientAddrs: Record<string, number>;
  /** failures by reason (curl error message, or `http NNN`, or `no backend header`) */
  failures: Record<string, number>;
  elapsedMs: number;
}

/** What clientRequests needs of a Lab (a full `Lab` fits): the client host, as the runner names it. */
export interface ClientSide {
  client: string;
}

const NETNS = new NetnsRunner();

function bump(m: Record<string, number>, k: string): void {
  m[k] = (m[k] ?? 0) + 1;
}

function hostPart(addr: string): string {
  return addr.includes(':') ? `[${addr}]` : addr;
}

/** Run `count` HTTP GETs from the client host to addr:port (a VIP, or any lab address). */
export async function clientRequests(
  lab: ClientSide,
  addr: string,
  port: number,
  count: number,
  opts: ClientRequestsOptions = {},
): Promise<ClientRequestsResult> {
  const concurrency = opts.concurrency ?? 10;
  const maxTime = opts.maxTimeSec ?? 2;
  const path = opts.path ?? '/';
  if (!Number.isInteger(count) || count < 1 || count > MAX_REQUESTS) {
    throw new LbError('ERR_LB_USAGE', `request count ${count} is not in 1..${MAX_REQUESTS}`);
  }
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > MAX_CONCURRENCY) {
    throw new LbError('ERR_LB_USAGE', `concurrency ${concurrency} is not in 1..${MAX_CONCURRENCY}`);
  }
  if (!(maxTime > 0 && maxTime <= 30)) throw new LbError('ERR_LB_USAGE', `maxTimeSec ${maxTime} is not in (0, 30]`);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new LbError('ERR_LB_USAGE', `port ${port} is not a port`);
  if (!/^[0-9a-fA-F.:]+$/.test(addr)) throw new LbError('ERR_LB_USAGE', `${addr} is not an IP address`);
  if (!/^\/[\w./?=&%-]*$/.test(path)) throw new LbError('ERR_LB_USAGE', `invalid path ${path}`);

  // The URL list goes through curl's config on stdin; everything in it was validated above.
  const url = `http://${hostPart(addr)}:${port}${path}`;
  const config = Array.from({ length: count }, () => `url = "${url}"\noutput = "/dev/null"\n`).join('');
  const fmt = 'R\t%{http_code}\t%{exitcode}\t%header{x-lab-backend}\t%header{x-lab-client}\t%{errormsg}\n';
  const argv = [
    // -g: the brackets of an IPv6 URL are not a glob; -6 says which family, as an operator would.
    'curl', '-s', '-g', ...(addr.includes(':') ? ['-6'] : []), '--parallel', '--parallel-immediate', '--parallel-max', String(concurrency),
    '--max-time', String(maxTime), '--connect-timeout', String(maxTime),
    '-H', 'Connection: close', '--noproxy', '*', '-w', fmt, '--config', '-',
  ];
  // Bound for the whole batch: every wave may take maxTime, plus start-up slack.
  const timeoutMs = Math.ceil(count / concurrency) * (maxTime * 1000 + 200) + 10_000;

  const started = Date.now();
  const r = await (opts.runner ?? NETNS).exec(lab.client, argv, { input: config, allowFail: true, timeoutMs });
  const elapsedMs = Date.now() - started;

  const res: ClientRequestsResult = { total: count, ok: 0, failed: 0, byBackend: {}, clientAddrs: {}, failures: {}, elapsedMs };
  let seen = 0;
  for (const line of r.stdout.split('\n')) {
    if (!line.startsWith('R\t')) continue;
    seen++;
    const [, httpCode = '', exitCode = '', backend = '', client = '', errmsg = ''] = line.split('\t');
    if (exitCode !== '0') {
      res.failed++;
      bump(res.failures, errmsg.trim() || `curl exit ${exitCode}`);
    } else if (httpCode !== '200') {
      res.failed++;
      bump(res.failures, `http ${httpCode}`);
    } else if (!backend) {
      res.failed++;
      bump(res.failures, 'no backend header');
    } else {
      res.ok++;
      bump(res.byBackend, backend.trim());
      bump(res.clientAddrs, client.trim());
    }
  }
  if (seen < count) {
    // curl died early (or was killed): count what never reported as failed.
    res.failed += count - seen;
    const why = r.status === 0 ? 'no result from curl' : `curl exit status ${r.status ?? r.signal ?? '?'}: ${r.stderr.trim().split('\n')[0] ?? ''}`;
    res.failures[why] = (res.failures[why] ?? 0) + (count - seen);
  }
  return res;
}
