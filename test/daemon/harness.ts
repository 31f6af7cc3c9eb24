/**
 * A real daemon process for tests: `lbctl daemon` inside a lab namespace (nsenter --net, so the
 * root mount namespace and its bpffs stay visible), plus `lbctl` runs against its socket.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '../../src/lab/lab.js';

export const LBCTL = join(REPO_ROOT, 'dist/cli/main.js');

export interface LbctlResult {
  status: number | null;
  stdout: string;
  stderr: string;
  json<T = unknown>(): T;
}

export function lbctl(socket: string, args: string[], opts: { asUser?: number; input?: string } = {}): LbctlResult {
  const argv = [process.execPath, LBCTL, '--socket', socket, ...args];
  const full = opts.asUser !== undefined ? ['setpriv', `--reuid=${opts.asUser}`, `--regid=${opts.asUser}`, '--clear-groups', ...argv] : argv;
  // Without tap's loader hooks (NODE_OPTIONS): lbctl runs as a user would run it.
  const env = { ...process.env, NODE_OPTIONS: '' };
  const r = spawnSync(full[0]!, full.slice(1), { encoding: 'utf8', timeout: 60_000, env, ...(opts.input ? { input: opts.input } : {}) });
  return {
    status: r.status,
    stdout: r.stdout,
    stderr: r.stderr,
    json<T>() {
      try {
        return JSON.parse(r.stdout) as T;
      } catch {
        throw new Error(`lbctl ${args.join(' ')}: not JSON (status ${r.status}): ${r.stdout}\n${r.stderr}`);
      }
    },
  };
}

export class DaemonProc {
  readonly proc: ChildProcess;
  logs = '';
  exited: Promise<number | null>;

  /** `ns` null: the root network namespace. */
  constructor(ns: string | null, config: string, readonly socket: string, env: NodeJS.ProcessEnv = {}) {
    const argv = [process.execPath, LBCTL, '--socket', socket, 'daemon', '--config', config];
    const full = ns === null ? argv : ['nsenter', `--net=/run/netns/${ns}`, ...argv];
    this.proc = spawn(full[0]!, full.slice(1), {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NODE_OPTIONS: '', ...env },
    });
    const add = (b: Buffer) => {
      this.logs += b.toString();
      if (this.logs.length > 1_000_000) this.logs = this.logs.slice(-500_000);
    };
    this.proc.stdout!.on('data', add);
    this.proc.stderr!.on('data', add);
    this.exited = new Promise((r) => this.proc.once('exit', (code) => r(code)));
  }

  /** Resolves once `lbctl status` answers; rejects with the logs if the daemon died or 20 s passed. */
  async ready(): Promise<void> {
    const deadline = Date.now() + 20_000;
    let dead = false;
    void this.exited.then(() => (dead = true));
    while (Date.now() < deadline && !dead) {
      if (existsSync(this.socket) && lbctl(this.socket, ['status', '--json']).status === 0) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`daemon not ready (${dead ? 'exited' : 'timeout'}):\n${this.logs}`);
  }

  kill(sig: NodeJS.Signals = 'SIGKILL'): Promise<number | null> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill(sig);
    return this.exited;
  }

  /** JSON log lines as objects (the daemon logs JSON when stderr is not a terminal). */
  events(): Record<string, unknown>[] {
    return this.logs
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  }
}

/** Poll fn until it returns a truthy value or the time is up. */
export async function until<T>(what: string, fn: () => T | undefined | false, timeoutMs = 15_000, stepMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}
