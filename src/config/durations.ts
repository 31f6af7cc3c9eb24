/**
 * Durations in the file are strings with a unit ("500ms", "2s", "1.5s", "1m"); the normalized
 * config holds whole milliseconds. A bare number is refused rather than guessed: "2" could mean
 * seconds to one operator and milliseconds to the next.
 */

export const MAX_DURATION_MS = 60 * 60 * 1000;

const UNIT_MS = { ms: 1, s: 1000, m: 60_000 } as const;

export type DurationResult = { ms: number } | { error: string; hint?: string };

export function parseDuration(v: unknown): DurationResult {
  if (typeof v === 'number') {
    return {
      error: `${v} has no unit`,
      hint: `write it as a string with a unit: "${v}s" or "${v}ms"`,
    };
  }
  if (typeof v !== 'string') return { error: `expected a duration such as "2s", got ${typeof v}` };
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)$/.exec(v.trim());
  if (m === null) {
    return {
      error: `${JSON.stringify(v)} is not a duration`,
      hint: 'a number and a unit (ms, s or m), e.g. "500ms", "2s", "1.5s"',
    };
  }
  const ms = Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS];
  // Float products such as 1.1 * 1000 land a hair off the integer they mean.
  const rounded = Math.round(ms);
  if (Math.abs(ms - rounded) > 1e-6) return { error: `${JSON.stringify(v)} is not a whole number of milliseconds` };
  if (rounded <= 0) return { error: `${JSON.stringify(v)} must be longer than zero` };
  if (rounded > MAX_DURATION_MS) return { error: `${JSON.stringify(v)} is longer than the maximum 60m` };
  return { ms: rounded };
}

/** The shortest spelling that parses back to `ms`, for messages and for writing files. */
export function formatDuration(ms: number): string {
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms >= 1000 && ms % 100 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}
