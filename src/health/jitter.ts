/**
 * When probes run. Probes of many backends that start together would stay in lock-step forever
 * and hit the network (and a shared backend) in bursts, so the first probe of each key waits a
 * random part of one interval and every later interval is stretched or shrunk by up to `jitter`.
 * `random` is injectable so tests can pin the draws.
 */

export type Random = () => number;

/** The wait before a key's first probe: uniform in [0, interval). */
export function firstDelay(intervalMs: number, random: Random = Math.random): number {
  return intervalMs * clampUnit(random());
}

/** The wait between the end of one probe and the start of the next: interval × (1 ± jitter). */
export function nextDelay(intervalMs: number, jitter: number, random: Random = Math.random): number {
  const j = Math.min(Math.max(jitter, 0), 1);
  return intervalMs * (1 + j * (2 * clampUnit(random()) - 1));
}

/** A draw in [0, 1), whatever an injected generator returns. */
function clampUnit(x: number): number {
  if (!Number.isFinite(x) || x < 0) return 0;
  return x >= 1 ? 1 - Number.EPSILON : x;
}
