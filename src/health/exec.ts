/**
 * Exec probe: run an argv (no shell) with the target in its environment; exit 0 is success.
 *
 * The command starts in its own process group (a new session), so that at the timeout, on abort,
 * and also after it exits, one SIGKILL to the group takes every process it started: a check script
 * that leaves `sleep 100` or a hung curl behind must not leak it into the daemon's lifetime. A
 * process that starts yet another session escapes that; we then stop waiting for its stderr
 * shortly after the command itself exits.
 */
import { spawn } from 'node:child_process';
import type { HealthCheck } from '../config/types.js';
import { bounded, errorDetail } from './bounded.js';
import { probePort, type ProbeResult, type ProbeTarget } from './types.js';

export const STDERR_TAIL_BYTES = 200;
/** after the command exits, how long its stderr may stay open (held by an escaped grandchild) */
const CLOSE_GRACE_MS = 200;

export function execEnv(target: ProbeTarget, check: HealthCheck): Record<string, string> {
  return {
    XDPLB_BACKEND: target.backend.address,
    XDPLB_PORT: String(probePort(target, check)),
    XDPLB_VIP: target.service.vip,
    XDPLB_SERVICE: target.service.name,
  };
}

/** Keeps the last `max` bytes written to it. */
class Tail {
  private buf = Buffer.alloc(0);
  constructor(private readonly max: number) {}
  push(b: Buffer): void {
    // copy, so a large chunk is not kept alive by a small view into it
    this.buf = Buffer.from(Buffer.concat([this.buf, b.subarray(-this.max)]).subarray(-this.max));
  }
  text(): string {
    return this.buf.toString('utf8').trim().replace(/\s*\n\s*/g, ' | ');
  }
}

export function probeExec(target: ProbeTarget, check: HealthCheck, signal: AbortSignal): Promise<ProbeResult> {
  return bounded(signal, check.timeoutMs, (scope) => {
    const argv = check.exec?.command ?? [];
    const [file, ...args] = argv;
    if (file === undefined) {
      scope.finish(false, 'no command in the check');
      return;
    }
    const child = spawn(file, args, {
      detached: true,
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, ...execEnv(target, check) },
    });
    const tail = new Tail(STDERR_TAIL_BYTES);
    const withTail = (s: string): string => {
      const t = tail.text();
      return t === '' ? s : `${s}: ${t}`;
    };
    const killGroup = (): void => {
      if (child.pid === undefined) return;
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // ESRCH: the whole group is gone already
      }
    };
    let grace: NodeJS.Timeout | undefined;
    scope.defer(() => {
      clearTimeout(grace);
      killGroup();
      child.stderr?.destroy();
    });
    scope.onTimeout(() => ({ ok: false, detail: withTail(`timeout after ${check.timeoutMs} ms (killed)`) }));

    child.stderr?.on('data', (b: Buffer) => tail.push(b));
    child.on('error', (e) => scope.finish(false, errorDetail(e)));
    child.on('exit', (status, sig) => {
      // killed by our own clean-up: the probe has settled already
      if (scope.settled) return;
      const verdict = (): void => {
        if (status === 0) scope.finish(true, 'exit 0');
        else scope.finish(false, withTail(status === null ? `killed by ${sig ?? 'a signal'}` : `exit ${status}`));
      };
      // whatever it left running goes now; that also closes their copies of the stderr pipe
      killGroup();
      child.once('close', verdict);
      grace = setTimeout(verdict, CLOSE_GRACE_MS);
    });
  });
}
