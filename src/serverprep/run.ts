/**
 * Server prep on many hosts at once: a bounded pool of workers, every host's outcome collected
 * (one host's failure never stops or fails the others), progress reported as hosts start and finish.
 * Jobs for the same login run one after another (the script locks per host anyway, and a host must
 * not see its own `add` and `remove` race); different hosts run in parallel.
 *
 * Problems with the run as a whole (bad arguments, no key, unreadable known_hosts) are thrown as
 * LbError before any host is contacted.
 */
import { homedir } from 'node:os';
import { join } from 'node:path';
import { LbError } from '../errors.js';
import type { Service } from '../config/types.js';
import { hostKey, parseHostSpec, type HostSpec } from './hostspec.js';
import { KnownHosts } from './knownhosts.js';
import { loadCredentials, runLocally, runOverSsh, type HostResult, type SshContext } from './remote.js';
import { readPrepScript, scriptArgv, SERVER_PREP_SCRIPT, type HostStatus, type PrepAction, type PrepArgs, type PrepMode, type ScriptResult } from './script.js';

export const DEFAULT_CONCURRENCY = 16;
export const MAX_CONCURRENCY = 256;
export const MAX_HOSTS = 10_000;
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
export const DEFAULT_COMMAND_TIMEOUT_MS = 60_000;
/** The label of a `--local` run in tables and outcomes. */
export const LOCAL_HOST = 'local';

/** One run of the script: on a host over SSH, or on this machine. */
export interface PrepJob {
  target: HostSpec | typeof LOCAL_HOST;
  args: PrepArgs;
}

export interface HostOutcome {
  /** the host as the operator wrote it, or `local` */
  host: string;
  action: PrepAction;
  mode?: PrepMode;
  ok: boolean;
  status: HostStatus;
  detail: string;
  /** the script's own JSON result, when it got that far */
  result?: ScriptResult;
  durationMs: number;
}

export type ProgressEvent =
  | { type: 'start'; host: string; index: number; total: number }
  | { type: 'finish'; outcome: HostOutcome; index: number; total: number };

export interface SshSettings {
  /** known_hosts files; the first one is written by accept-new. Default ~/.ssh/known_hosts, /etc/ssh/ssh_known_hosts */
  knownHostsFiles?: string[];
  acceptNew?: boolean;
  /** private key files (-i); default: ssh's id_ed25519, id_ecdsa, id_rsa when no agent key works */
  identityFiles?: string[];
  /** ssh-agent socket; default $SSH_AUTH_SOCK; false: do not use an agent */
  agent?: string | false;
  connectTimeoutMs?: number;
  commandTimeoutMs?: number;
}

export interface RunOptions extends SshSettings {
  concurrency?: number;
  /** the script to send; default scripts/server-prep.sh of this repository */
  scriptPath?: string;
  onProgress?: (ev: ProgressEvent) => void;
}

export function defaultKnownHostsFiles(): string[] {
  return [join(homedir(), '.ssh', 'known_hosts'), '/etc/ssh/ssh_known_hosts'];
}

function positiveMs(v: number | undefined, dflt: number, what: string): number {
  const n = v ?? dflt;
  if (!Number.isFinite(n) || n <= 0 || n > 24 * 3600 * 1000) {
    throw new LbError('ERR_LB_USAGE', `${what}: ${String(v)} is not a duration between 0 and 24 h`);
  }
  return n;
}

function labelOf(job: PrepJob): string {
  return job.target === LOCAL_HOST ? LOCAL_HOST : job.target.spec;
}

function groupKey(job: PrepJob): string {
  return job.target === LOCAL_HOST ? `\0${LOCAL_HOST}` : hostKey(job.target);
}

/**
 * Run every job; resolve with one outcome per job, in the jobs' order. Throws only for problems
 * with the run itself (arguments, keys, known_hosts), before contacting any host.
 */
export async function runPrepJobs(jobs: readonly PrepJob[], opts: RunOptions = {}): Promise<HostOutcome[]> {
  if (jobs.length > MAX_HOSTS) throw new LbError('ERR_LB_USAGE', `at most ${MAX_HOSTS} hosts per run`);
  const concurrency = opts.concurrency ?? DEFAULT_CONCURRENCY;
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > MAX_CONCURRENCY) {
    throw new LbError('ERR_LB_USAGE', `concurrency: ${concurrency} is not an integer in 1..${MAX_CONCURRENCY}`);
  }
  const connectTimeoutMs = positiveMs(opts.connectTimeoutMs, DEFAULT_CONNECT_TIMEOUT_MS, 'connect timeout');
  const commandTimeoutMs = positiveMs(opts.commandTimeoutMs, DEFAULT_COMMAND_TIMEOUT_MS, 'command timeout');
  const argvs = jobs.map((j) => scriptArgv(j.args));
  const script = readPrepScript(opts.scriptPath ?? SERVER_PREP_SCRIPT);

  let ssh: SshContext | undefined;
  if (jobs.some((j) => j.target !== LOCAL_HOST)) {
    ssh = {
      credentials: loadCredentials({ ...(opts.identityFiles ? { identityFiles: opts.identityFiles } : {}), ...(opts.agent !== undefined ? { agent: opts.agent } : {}) }),
      knownHosts: KnownHosts.load(opts.knownHostsFiles ?? defaultKnownHostsFiles()),
      acceptNew: opts.acceptNew ?? false,
      connectTimeoutMs,
      commandTimeoutMs,
    };
  }

  const groups = new Map<string, number[]>();
  jobs.forEach((j, i) => {
    const k = groupKey(j);
    groups.set(k, [...(groups.get(k) ?? []), i]);
  });
  const queue = [...groups.values()];
  const outcomes: (HostOutcome | undefined)[] = new Array<HostOutcome | undefined>(jobs.length);
  const total = jobs.length;

  const progress = (ev: ProgressEvent): void => {
    try {
      opts.onProgress?.(ev);
    } catch {
      // a broken progress display must not lose a host's result
    }
  };

  const runOne = async (i: number): Promise<void> => {
    const job = jobs[i]!;
    const argv = argvs[i]!;
    const host = labelOf(job);
    progress({ type: 'start', host, index: i, total });
    const t0 = Date.now();
    let r: HostResult;
    try {
      r = job.target === LOCAL_HOST ? await runLocally(script, argv, commandTimeoutMs) : await runOverSsh(job.target, script, argv, ssh!);
    } catch (e) {
      // runOverSsh/runLocally resolve for every host failure; this is a bug, kept to this host.
      r = { ok: false, status: 'failed', detail: `internal error: ${(e as Error).message}` };
    }
    const outcome: HostOutcome = {
      host,
      action: job.args.action,
      ...(job.args.mode ? { mode: job.args.mode } : {}),
      ok: r.ok,
      status: r.status,
      detail: r.detail,
      ...(r.result ? { result: r.result } : {}),
      durationMs: Date.now() - t0,
    };
    outcomes[i] = outcome;
    progress({ type: 'finish', outcome, index: i, total });
  };

  const worker = async (): Promise<void> => {
    for (let g = queue.shift(); g !== undefined; g = queue.shift()) {
      for (const i of g) await runOne(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, queue.length) }, worker));
  return outcomes.map((o, i) => o ?? { host: labelOf(jobs[i]!), action: jobs[i]!.args.action, ok: false, status: 'failed', detail: 'not run (internal error)', durationMs: 0 });
}

/** The same script arguments on every host in `hosts` (`[user@]host[:port]`), duplicates run once. */
export function jobsForHosts(hosts: readonly string[], args: PrepArgs, defaults: { user?: string } = {}): PrepJob[] {
  const seen = new Set<string>();
  const jobs: PrepJob[] = [];
  for (const h of hosts) {
    const spec = parseHostSpec(h, defaults);
    const k = hostKey(spec);
    if (seen.has(k)) continue;
    seen.add(k);
    jobs.push({ target: spec, args });
  }
  return jobs;
}

/**
 * What "prepare backends automatically" has to do for a config: every backend of an l2dsr or ipip
 * service needs that service's VIP on lo (nat backends need nothing). One job per backend address
 * and mode, VIPs sorted, so the same config always gives the same jobs.
 */
export function planBackendPrep(
  services: readonly Pick<Service, 'vip' | 'mode' | 'backends'>[],
  action: PrepAction = 'add',
  opts: { user?: string; port?: number } = {},
): PrepJob[] {
  const want = new Map<string, { address: string; mode: PrepMode; vips: Set<string> }>();
  for (const s of services) {
    if (s.mode !== 'l2dsr' && s.mode !== 'ipip') continue;
    for (const b of s.backends) {
      const k = `${b.address}\0${s.mode}`;
      const w = want.get(k) ?? { address: b.address, mode: s.mode, vips: new Set<string>() };
      w.vips.add(s.vip);
      want.set(k, w);
    }
  }
  return [...want.values()]
    .sort((a, b) => (a.address === b.address ? a.mode.localeCompare(b.mode) : a.address.localeCompare(b.address)))
    .map((w) => {
      const hostPart = w.address.includes(':') ? `[${w.address}]` : w.address;
      const spec = `${opts.user ? `${opts.user}@` : ''}${hostPart}${opts.port ? `:${opts.port}` : ''}`;
      return { target: parseHostSpec(spec, opts.user ? { user: opts.user } : {}), args: { action, vips: [...w.vips].sort(), mode: w.mode } };
    });
}

/** For the daemon's automatic prep: plan from the config's services, run, return every outcome. */
export async function prepareBackends(
  services: readonly Pick<Service, 'vip' | 'mode' | 'backends'>[],
  opts: RunOptions & { user?: string; port?: number; action?: PrepAction } = {},
): Promise<HostOutcome[]> {
  const jobs = planBackendPrep(services, opts.action ?? 'add', { ...(opts.user ? { user: opts.user } : {}), ...(opts.port ? { port: opts.port } : {}) });
  if (jobs.length === 0) return [];
  return runPrepJobs(jobs, opts);
}
