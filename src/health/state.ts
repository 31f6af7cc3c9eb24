/**
 * The rise/fall state machine, pure: `observe()` takes a status and one probe result and returns
 * the next status and the transition, if any. No clock, no I/O; the monitor feeds it.
 *
 *   unknown --rise consecutive successes--> up      unknown --fall consecutive failures--> down
 *   up      --fall consecutive failures---> down    down    --rise consecutive successes--> up
 *
 * `unknown` is where every backend starts (and restarts when its check changes). Whether traffic
 * may go to an unknown backend is the caller's decision, not this module's. The intended policy:
 * treat unknown as up only for a backend that was in the data path the daemon adopted on restart
 * (a restart then drops nothing), and as not usable for a backend never seen before (no traffic
 * before it has proved itself with `rise` successes).
 */
import type { ProbeResult } from './types.js';

export type HealthState = 'unknown' | 'up' | 'down';

export interface Transition {
  from: HealthState;
  to: HealthState;
  /** ms since the epoch */
  at: number;
  /** the detail of the probe that caused it (or why, for transitions no probe caused) */
  detail: string;
}

export interface HealthStatus {
  state: HealthState;
  consecutiveSuccesses: number;
  consecutiveFailures: number;
  /** probes observed since the status began */
  probes: number;
  /** failed probes among them */
  failures: number;
  last: (ProbeResult & { at: number }) | null;
  /** the most recent transitions, oldest first, at most HISTORY_LENGTH */
  history: Transition[];
}

export const HISTORY_LENGTH = 10;

export function initialStatus(state: HealthState = 'unknown'): HealthStatus {
  return { state, consecutiveSuccesses: 0, consecutiveFailures: 0, probes: 0, failures: 0, last: null, history: [] };
}

export function pushHistory(history: readonly Transition[], t: Transition): Transition[] {
  return [...history, t].slice(-HISTORY_LENGTH);
}

export interface Thresholds {
  rise: number;
  fall: number;
}

export function observe(
  status: HealthStatus,
  result: ProbeResult,
  at: number,
  { rise, fall }: Thresholds,
): { status: HealthStatus; transition: Transition | null } {
  const consecutiveSuccesses = result.ok ? status.consecutiveSuccesses + 1 : 0;
  const consecutiveFailures = result.ok ? 0 : status.consecutiveFailures + 1;
  let to: HealthState = status.state;
  if (status.state !== 'up' && consecutiveSuccesses >= Math.max(1, rise)) to = 'up';
  else if (status.state !== 'down' && consecutiveFailures >= Math.max(1, fall)) to = 'down';

  const transition = to === status.state ? null : { from: status.state, to, at, detail: result.detail };
  return {
    status: {
      state: to,
      consecutiveSuccesses,
      consecutiveFailures,
      probes: status.probes + 1,
      failures: status.failures + (result.ok ? 0 : 1),
      last: { ...result, at },
      history: transition === null ? status.history : pushHistory(status.history, transition),
    },
    transition,
  };
}
