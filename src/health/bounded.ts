/**
 * The frame every probe runs in: one timer, one abort listener, a list of clean-ups, and a result
 * that settles exactly once. Whether a probe ends by answer, error, timeout or abort, the same
 * path closes its sockets, kills its processes and clears its timer, so no handle outlives it.
 */
import type { ProbeResult } from './types.js';

export interface ProbeScope {
  readonly timeoutMs: number;
  /** Settle the probe (later calls are ignored) and run every clean-up. */
  finish(ok: boolean, detail: string): void;
  /** Run `fn` once when the probe settles, however it settles (last registered runs first). */
  defer(fn: () => void): void;
  /** How to settle at the deadline. Default: failure, `timeout after N ms`. */
  onTimeout(fn: () => { ok: boolean; detail: string }): void;
  readonly settled: boolean;
}

export function roundMs(ms: number): number {
  return Math.round(ms * 10) / 10;
}

/** A short, human detail for a Node error: `connect ECONNREFUSED`, `TLS: self-signed certificate`. */
export function errorDetail(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  const err = e as NodeJS.ErrnoException;
  if (typeof err.code === 'string') {
    if (/^E[A-Z0-9]+$/.test(err.code)) return err.syscall ? `${err.syscall} ${err.code}` : err.code;
    // OpenSSL's verification codes (DEPTH_ZERO_SELF_SIGNED_CERT ...) read better as their message
    if (/CERT|SSL|TLS|ALTNAME|SIGNATURE|ISSUER/.test(err.code)) return `TLS: ${err.message}`;
    return `${err.code}: ${err.message}`;
  }
  return err.message;
}

export function bounded(
  outer: AbortSignal,
  timeoutMs: number,
  body: (scope: ProbeScope) => void,
): Promise<ProbeResult> {
  const t0 = performance.now();
  if (outer.aborted) return Promise.resolve({ ok: false, ms: 0, detail: 'aborted' });

  return new Promise<ProbeResult>((resolve) => {
    const cleanups: (() => void)[] = [];
    let settled = false;
    let timeoutResult = (): { ok: boolean; detail: string } => ({ ok: false, detail: `timeout after ${timeoutMs} ms` });

    const finish = (ok: boolean, detail: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      outer.removeEventListener('abort', onAbort);
      for (const fn of cleanups.reverse()) {
        try {
          fn();
        } catch {
          // a clean-up that fails (socket already gone, process already reaped) has nothing left to clean
        }
      }
      resolve({ ok, ms: roundMs(performance.now() - t0), detail });
    };
    const onAbort = (): void => finish(false, 'aborted');
    const timer = setTimeout(() => {
      const r = timeoutResult();
      finish(r.ok, r.detail);
    }, timeoutMs);
    outer.addEventListener('abort', onAbort, { once: true });

    const scope: ProbeScope = {
      timeoutMs,
      finish,
      defer: (fn) => {
        if (settled) fn();
        else cleanups.push(fn);
      },
      onTimeout: (fn) => {
        timeoutResult = fn;
      },
      get settled() {
        return settled;
      },
    };
    try {
      body(scope);
    } catch (e) {
      finish(false, errorDetail(e));
    }
  });
}
