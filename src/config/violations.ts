/**
 * The violation list: every problem found in a config, each with the path of the key it is about,
 * and the one error that carries the list (ERR_LB_CONFIG). Messages say what is wrong with the
 * value that was written; a hint says what to write instead when that is not obvious.
 */
import type { z } from 'zod';
import { LbError } from '../errors.js';

export type PathPart = string | number;

export interface Violation {
  /** `services[2].backends[0].address`; '' for the file as a whole */
  path: string;
  message: string;
  hint?: string;
  /** 1-based position in the file, for syntax errors */
  line?: number;
  col?: number;
}

/** One line per violation, as it appears in `detail`. */
export function formatViolation(v: Violation): string {
  const where = v.line !== undefined ? `line ${v.line}, column ${v.col ?? 1}` : v.path === '' ? '(top level)' : v.path;
  return `${where}: ${v.message}${v.hint === undefined ? '' : ` (hint: ${v.hint})`}`;
}

export class ConfigError extends LbError {
  readonly violations: readonly Violation[];

  constructor(source: string | undefined, violations: readonly Violation[]) {
    const n = violations.length;
    super('ERR_LB_CONFIG', `config${source === undefined ? '' : ` ${source}`}: ${n} ${n === 1 ? 'problem' : 'problems'}`, {
      detail: violations.map(formatViolation).join('\n'),
      hint: 'docs/config.md describes every key, its type and its default',
    });
    this.name = 'ConfigError';
    this.violations = Object.freeze(violations.map((v) => Object.freeze({ ...v })));
  }
}

export function isConfigError(e: unknown): e is ConfigError {
  return e instanceof ConfigError;
}

export function formatPath(parts: readonly PathPart[]): string {
  let out = '';
  for (const p of parts) {
    if (typeof p === 'number') out += `[${p}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(p)) out += out === '' ? p : `.${p}`;
    else out += `[${JSON.stringify(p)}]`;
  }
  return out;
}

export function joinPath(base: string, ...parts: PathPart[]): string {
  const tail = formatPath(parts);
  if (base === '') return tail;
  return tail.startsWith('[') || tail === '' ? base + tail : `${base}.${tail}`;
}

/** A short, quoted rendering of a value the user wrote, for messages. */
export function describeValue(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null (no value)';
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? `${v.slice(0, 57)}...` : v);
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  return String(v);
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      const sub = (prev[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      cur.push(Math.min(sub, (prev[j] ?? 0) + 1, (cur[j - 1] ?? 0) + 1));
    }
    prev = cur;
  }
  return prev[b.length] ?? 0;
}

/** The known word closest to `word`, if it is close enough to be a typo of it. */
export function closest(word: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const k of known) {
    const d = editDistance(word.toLowerCase(), k.toLowerCase());
    if (d < bestD) {
      best = k;
      bestD = d;
    }
  }
  // One edit per three letters: "intervall" finds "interval", but "icmp" does not find "tcp".
  return bestD <= Math.max(1, Math.min(3, Math.floor(word.length / 3))) ? best : undefined;
}

const EXPECTED: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'an integer',
  boolean: 'true or false',
  array: 'a list',
  object: 'a mapping',
};

/** Our wording for zod's issues; custom issues already carry ours (and maybe a hint in params). */
export function fromZodIssue(base: string, issue: z.core.$ZodIssue): Violation {
  const path = joinPath(base, ...issue.path.map((p) => (typeof p === 'symbol' ? String(p) : p)));
  const got = describeValue(issue.input);
  switch (issue.code) {
    case 'invalid_type': {
      const expected = EXPECTED[issue.expected] ?? issue.expected;
      if (issue.input === undefined) return { path, message: `missing (required: ${expected})` };
      const quotedBoolean = issue.expected === 'boolean' && typeof issue.input === 'string';
      return {
        path,
        message: `expected ${expected}, got ${got}`,
        ...(quotedBoolean ? { hint: 'write true or false without quotes' } : {}),
      };
    }
    case 'too_small':
      if (issue.origin === 'array') {
        return { path, message: `needs at least ${issue.minimum} ${issue.minimum === 1 ? 'entry' : 'entries'}` };
      }
      if (issue.origin === 'string') return { path, message: 'must not be empty' };
      return { path, message: `must be at least ${issue.minimum}, got ${got}` };
    case 'too_big':
      if (issue.origin === 'array') {
        const n = Array.isArray(issue.input) ? ` (got ${issue.input.length})` : '';
        return { path, message: `takes at most ${issue.maximum} entries${n}` };
      }
      if (issue.origin === 'string') return { path, message: `is longer than ${issue.maximum} characters` };
      return { path, message: `must be at most ${issue.maximum}, got ${got}` };
    case 'invalid_value': {
      const options = issue.values.map((v) => String(v));
      if (issue.input === undefined) return { path, message: `missing (required: one of ${options.join(', ')})` };
      const guess = typeof issue.input === 'string' ? closest(issue.input, options) : undefined;
      return {
        path,
        message: `${got} is not one of ${options.join(', ')}${guess === undefined ? '' : ` (did you mean "${guess}"?)`}`,
      };
    }
    case 'custom': {
      const hint: unknown = issue.params?.['hint'];
      return { path, message: issue.message, ...(typeof hint === 'string' ? { hint } : {}) };
    }
    default:
      return { path, message: issue.message };
  }
}
