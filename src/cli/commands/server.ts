/**
 * `lbctl server prep|check|unprep HOST...`: scripts/server-prep.sh on backends, over SSH (or on this
 * machine with --local), many hosts in parallel. The handler returns the per-host outcomes; the
 * table and JSON are printed by the shared `act`/`emit` (context.ts). A live progress line goes to
 * stderr, only when stderr is a terminal.
 */
import type { Command } from 'commander';
import { LbError } from '../../errors.js';
import {
  DEFAULT_COMMAND_TIMEOUT_MS,
  DEFAULT_CONCURRENCY,
  DEFAULT_CONNECT_TIMEOUT_MS,
  LOCAL_HOST,
  PREP_MODES,
  cleanText,
  defaultKnownHostsFiles,
  jobsForHosts,
  runPrepJobs,
  type HostOutcome,
  type HostStatus,
  type PrepAction,
  type PrepArgs,
  type PrepJob,
  type PrepMode,
  type ProgressEvent,
} from '../../serverprep/index.js';
import { act, type Result } from '../context.js';
import { table } from '../output.js';

export type ServerAction = 'prep' | 'check' | 'unprep';

const SCRIPT_ACTION: Record<ServerAction, PrepAction> = { prep: 'add', check: 'check', unprep: 'remove' };

export interface ServerOptions {
  vip?: string[];
  mode?: string;
  user?: string;
  identity?: string[];
  knownHosts?: string;
  acceptNew?: boolean;
  connectTimeout?: string;
  timeout?: string;
  concurrency?: string;
  local?: boolean;
  json?: boolean;
  dev?: string[];
  stateDir?: string;
  decapObj?: string;
  persist?: boolean;
}

export interface ServerReport {
  action: ServerAction;
  mode?: PrepMode;
  vips: string[];
  ok: boolean;
  /** how many hosts ended in each status */
  counts: Partial<Record<HostStatus, number>>;
  hosts: HostOutcome[];
}

function usage(msg: string, hint?: string): LbError {
  return new LbError('ERR_LB_USAGE', msg, hint ? { hint } : {});
}

function seconds(v: string | undefined, dflt: number, what: string): number {
  if (v === undefined) return dflt;
  if (!/^[0-9]+(\.[0-9]+)?$/.test(v) || Number(v) <= 0 || Number(v) > 86400) {
    throw usage(`${what} ${JSON.stringify(v)}: want seconds, more than 0 and at most 86400`);
  }
  return Math.round(Number(v) * 1000);
}

function integer(v: string | undefined, dflt: number, what: string): number {
  if (v === undefined) return dflt;
  if (!/^[0-9]{1,4}$/.test(v) || Number(v) < 1) throw usage(`${what} ${JSON.stringify(v)}: want a positive integer`);
  return Number(v);
}

/** Build the jobs from the command line; every usage problem is an ERR_LB_USAGE before anything runs. */
export function serverJobs(action: ServerAction, hosts: readonly string[], opts: ServerOptions): PrepJob[] {
  if (opts.local && hosts.length > 0) throw usage('give hosts or --local, not both');
  if (!opts.local && hosts.length === 0) throw usage('no host given', 'lbctl server prep HOST... --vip ADDR --mode l2dsr|ipip (or --local)');
  if (opts.mode !== undefined && !PREP_MODES.includes(opts.mode as PrepMode)) {
    throw usage(`--mode ${JSON.stringify(opts.mode)}: want l2dsr or ipip`);
  }
  if (opts.persist && action !== 'prep') throw usage('--persist is only for server prep');
  const args: PrepArgs = {
    action: SCRIPT_ACTION[action],
    vips: opts.vip ?? [],
    ...(opts.mode !== undefined ? { mode: opts.mode as PrepMode } : {}),
    ...(opts.dev?.length ? { devs: opts.dev } : {}),
    ...(opts.stateDir !== undefined ? { stateDir: opts.stateDir } : {}),
    ...(opts.decapObj !== undefined ? { decapObj: opts.decapObj } : {}),
    ...(opts.persist ? { persist: true } : {}),
  };
  if (opts.local) return [{ target: LOCAL_HOST, args }];
  return jobsForHosts(hosts, args, opts.user !== undefined ? { user: opts.user } : {});
}

/** The handler: runs every host and returns the report (never prints it). */
export async function serverCommand(
  action: ServerAction,
  hosts: readonly string[],
  opts: ServerOptions,
  onProgress?: (ev: ProgressEvent) => void,
): Promise<ServerReport> {
  const jobs = serverJobs(action, hosts, opts);
  const outcomes = await runPrepJobs(jobs, {
    knownHostsFiles: opts.knownHosts !== undefined ? [opts.knownHosts] : defaultKnownHostsFiles(),
    acceptNew: !!opts.acceptNew,
    ...(opts.identity?.length ? { identityFiles: opts.identity } : {}),
    connectTimeoutMs: seconds(opts.connectTimeout, DEFAULT_CONNECT_TIMEOUT_MS, '--connect-timeout'),
    commandTimeoutMs: seconds(opts.timeout, DEFAULT_COMMAND_TIMEOUT_MS, '--timeout'),
    concurrency: integer(opts.concurrency, DEFAULT_CONCURRENCY, '--concurrency'),
    ...(onProgress ? { onProgress } : {}),
  });
  const counts: Partial<Record<HostStatus, number>> = {};
  for (const o of outcomes) counts[o.status] = (counts[o.status] ?? 0) + 1;
  return {
    action,
    ...(opts.mode !== undefined ? { mode: opts.mode as PrepMode } : {}),
    vips: opts.vip ?? [],
    ok: outcomes.every((o) => o.ok),
    counts,
    hosts: outcomes,
  };
}

/** The table for people: one row per host, then a one-line summary. */
export function formatServerReport(r: ServerReport): string {
  const rows = [['HOST', 'RESULT', 'DETAIL'], ...r.hosts.map((h) => [h.host, h.status === 'done' ? 'ok' : h.status, cleanText(h.detail)])];
  const failed = r.hosts.filter((h) => !h.ok).length;
  const why = Object.entries(r.counts)
    .filter(([s]) => s !== 'done')
    .map(([s, n]) => `${s} ${n}`)
    .join(', ');
  const summary = `server ${r.action}: ${r.hosts.length} host${r.hosts.length === 1 ? '' : 's'}, ${r.hosts.length - failed} ok, ${failed} failed${why ? ` (${why})` : ''}`;
  return `${table(rows)}\n${summary}`;
}

/** The live line on stderr: how many are done, which are running. Only on a terminal. */
export class ProgressLine {
  private readonly running = new Set<string>();
  private done = 0;
  private failed = 0;
  private total = 0;
  private readonly t0 = Date.now();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly out: NodeJS.WriteStream,
    private readonly what: string,
  ) {}

  event = (ev: ProgressEvent): void => {
    this.total = ev.total;
    if (ev.type === 'start') {
      this.running.add(ev.host);
    } else {
      this.running.delete(ev.outcome.host);
      this.done++;
      if (!ev.outcome.ok) this.failed++;
    }
    // The elapsed time keeps moving while slow hosts hold everything up.
    this.timer ??= setInterval(() => this.draw(), 500).unref();
    this.draw();
  };

  private draw(): void {
    const s = ((Date.now() - this.t0) / 1000).toFixed(0);
    const names = [...this.running].slice(0, 5).join(' ') + (this.running.size > 5 ? ` +${this.running.size - 5}` : '');
    const line = `${this.what}: ${this.done}/${this.total} done, ${this.failed} failed, ${s}s${names ? `; running: ${names}` : ''}`;
    const cols = (this.out.columns ?? 0) >= 20 ? (this.out.columns ?? 80) : 80;
    this.out.write(`\r\x1b[2K${line.length >= cols ? `${line.slice(0, cols - 4)}...` : line}`);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.out.write('\r\x1b[2K');
  }
}

function collect(v: string, prev: string[] = []): string[] {
  return [...prev, v];
}

const DESCRIPTIONS: Record<ServerAction, string> = {
  prep: 'prepare backends for DSR: VIPs on lo, ARP suppressed, ipip decapsulation (server-prep.sh add)',
  check: 'report what a backend lacks for DSR, without changing anything (server-prep.sh check)',
  unprep: 'undo what prep changed on backends (server-prep.sh remove)',
};

export function registerServer(program: Command): void {
  const server = program
    .command('server')
    .description('prepare real servers (backends) for direct server return, over SSH or locally');
  for (const action of ['prep', 'check', 'unprep'] as const) {
    const cmd = server
      .command(action)
      .description(DESCRIPTIONS[action])
      .argument('[hosts...]', '[user@]host[:port]; IPv6 as [addr] or [addr]:port')
      .option('--vip <addr>', 'a VIP the backend serves (repeatable)', collect)
      .option('--mode <mode>', `l2dsr or ipip${action === 'unprep' ? ' (optional)' : ''}`)
      .option('-l, --user <name>', 'login user for hosts without user@ (default: you); not root means sudo -n')
      .option('-i, --identity <file>', 'private key file (repeatable); default: ssh-agent, then ~/.ssh/id_*', collect)
      .option('--known-hosts <file>', 'known_hosts file (default ~/.ssh/known_hosts, plus /etc/ssh/ssh_known_hosts)')
      .option('--accept-new', 'record the key of a host not yet in known_hosts (never a changed one), like ssh -o StrictHostKeyChecking=accept-new')
      .option('--connect-timeout <s>', `seconds for TCP, SSH handshake and login (default ${DEFAULT_CONNECT_TIMEOUT_MS / 1000})`)
      .option('--timeout <s>', `seconds for the script itself (default ${DEFAULT_COMMAND_TIMEOUT_MS / 1000})`)
      .option('--concurrency <n>', `hosts at once (default ${DEFAULT_CONCURRENCY})`)
      .option('--local', 'run on this machine instead of over SSH')
      .option('--dev <iface>', 'real interface to configure on the host (repeatable; default: every one that is up)', collect)
      .option('--state-dir <dir>', 'where the host records what prep changed (default /var/lib/xdplb/server-prep)')
      .option('--decap-obj <path>', 'ipip without an ipip driver: the XDP decap object on the host')
      .option('--json', 'JSON for scripts');
    if (action === 'prep') cmd.option('--persist', 'also redo it at boot (sysctl.d file and a systemd unit on the host)');
    cmd.addHelpText(
      'after',
      `
The script (scripts/server-prep.sh) is sent over the connection and run with bash -s; nothing needs
to be installed on the host. Only key authentication; host keys must be in known_hosts.
Exit status: 0 every host ok, 1 some host failed, 2 usage error.

Examples:
  lbctl server ${action} 10.0.0.21 10.0.0.22 --vip 10.0.0.10 --mode l2dsr${action === 'prep' ? ' --accept-new' : ''}
  lbctl server ${action} admin@[2001:db8::21]:2222 --vip 10.0.0.11 --mode ipip -i ~/.ssh/lb_key`,
    );
    cmd.action(
      act(async (hosts: string[], opts: ServerOptions): Promise<Result> => {
        const progress = process.stderr.isTTY ? new ProgressLine(process.stderr, `server ${action}`) : undefined;
        let report: ServerReport;
        try {
          report = await serverCommand(action, hosts, opts, progress?.event);
        } finally {
          progress?.stop();
        }
        return { data: report, text: formatServerReport(report), exitCode: report.ok ? 0 : 1 };
      }),
    );
  }
}
