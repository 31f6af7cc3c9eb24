/**
 * scripts/server-prep.sh as seen from TypeScript: where it is, the argv it is given (validated here
 * too, before anything is sent anywhere: the script validates again on the host), and what its
 * `--json` output and exit status mean. Local and remote runs both end in `classifyRun`, so a host
 * reached over SSH and this machine report the same way.
 */
import { isIP } from 'node:net';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { LbError } from '../errors.js';

/** This file is src/serverprep/script.ts or dist/serverprep/script.js: the repo root is two up. */
export const SERVER_PREP_SCRIPT = fileURLToPath(new URL('../../scripts/server-prep.sh', import.meta.url));

export type PrepAction = 'add' | 'remove' | 'check';
export type PrepMode = 'l2dsr' | 'ipip';
export const PREP_MODES: readonly PrepMode[] = ['l2dsr', 'ipip'];

export interface PrepArgs {
  action: PrepAction;
  vips: string[];
  /** required for add and check */
  mode?: PrepMode;
  /** real interfaces to configure (default on the host: every Ethernet-like interface that is up) */
  devs?: string[];
  /** where the host records what add changed (absolute path on the host) */
  stateDir?: string;
  /** XDP decap object on the host, for ipip without an ipip driver */
  decapObj?: string;
  /** add only: also configure the host to redo it at boot */
  persist?: boolean;
}

export type HostStatus = 'done' | 'failed' | 'timeout' | 'refused' | 'auth' | 'hostkey';

export interface ApplyResult {
  action: 'add' | 'remove';
  changed: boolean;
  changes: string[];
  unchanged: string[];
  notes: string[];
}

export interface CheckResult {
  ok: boolean;
  checks: { name: string; ok: boolean; detail: string }[];
}

export type ScriptResult = ApplyResult | CheckResult;

/** What one run of the script produced, wherever it ran. */
export interface RawRun {
  stdout: string;
  stderr: string;
  /** exit status; null when it died of a signal or none was reported */
  code: number | null;
  signal: string | null;
}

export interface Classified {
  ok: boolean;
  status: HostStatus;
  detail: string;
  result?: ScriptResult;
}

const IFACE = /^[A-Za-z0-9_.:@+-]{1,15}$/;
const MAX_PATH = 4096;
const MAX_VIPS = 1024;

/** An IPv4/IPv6 address, optionally /32 or /128: what the script accepts as a VIP (it checks ranges). */
export function validVip(v: string): boolean {
  const slash = v.indexOf('/');
  const addr = slash < 0 ? v : v.slice(0, slash);
  const len = slash < 0 ? undefined : v.slice(slash + 1);
  const fam = addr.includes('%') ? 0 : isIP(addr);
  if (fam === 0) return false;
  return len === undefined || len === (fam === 4 ? '32' : '128');
}

function validPath(p: string): boolean {
  return p.startsWith('/') && p.length <= MAX_PATH && !/[\x00-\x1f\x7f]/.test(p);
}

/** Every problem with `a`, all at once (empty when fine). */
export function prepArgsProblems(a: PrepArgs): string[] {
  const errs: string[] = [];
  if (!['add', 'remove', 'check'].includes(a.action)) errs.push(`action ${JSON.stringify(a.action)}: want add, remove or check`);
  if (a.vips.length === 0) errs.push('at least one --vip is required');
  if (a.vips.length > MAX_VIPS) errs.push(`at most ${MAX_VIPS} VIPs per run`);
  for (const v of a.vips) {
    if (!validVip(v)) errs.push(`--vip ${JSON.stringify(v)}: not an IPv4 or IPv6 address (a /32 or /128 suffix is accepted)`);
  }
  if (a.mode === undefined) {
    if (a.action !== 'remove') errs.push('--mode l2dsr|ipip is required');
  } else if (!PREP_MODES.includes(a.mode)) {
    errs.push(`--mode ${JSON.stringify(a.mode)}: want l2dsr or ipip`);
  }
  for (const d of a.devs ?? []) {
    if (!IFACE.test(d) || ['lo', 'all', 'default', '.', '..'].includes(d)) errs.push(`--dev ${JSON.stringify(d)}: not a real interface name`);
  }
  if (a.stateDir !== undefined && !validPath(a.stateDir)) errs.push('--state-dir: want an absolute path without control characters');
  if (a.decapObj !== undefined && !validPath(a.decapObj)) errs.push('--decap-obj: want an absolute path without control characters');
  if (a.persist && a.action !== 'add') errs.push('--persist is only for prep (add)');
  return errs;
}

/** The script's argv (after `bash -s --`), always with --json. Throws ERR_LB_USAGE listing every problem. */
export function scriptArgv(a: PrepArgs): string[] {
  const errs = prepArgsProblems(a);
  if (errs.length > 0) {
    throw new LbError('ERR_LB_USAGE', `invalid server prep arguments: ${errs.join('; ')}`, { detail: errs.join('\n') });
  }
  const argv: string[] = [a.action];
  for (const v of a.vips) argv.push('--vip', v);
  if (a.mode !== undefined) argv.push('--mode', a.mode);
  for (const d of a.devs ?? []) argv.push('--dev', d);
  if (a.stateDir !== undefined) argv.push('--state-dir', a.stateDir);
  if (a.decapObj !== undefined) argv.push('--decap-obj', a.decapObj);
  if (a.persist) argv.push('--persist');
  argv.push('--json');
  return argv;
}

/** The script's text, to be sent on stdin. */
export function readPrepScript(path: string = SERVER_PREP_SCRIPT): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new LbError('ERR_LB_SSH', `cannot read the server prep script ${path}: ${(e as Error).message}`, {
      cause: e,
      hint: 'it is scripts/server-prep.sh of the xdplb repository',
    });
  }
}

const MAX_DETAIL = 2000;

/**
 * Text from a host, made safe to print: a hostile or broken host must not be able to move the
 * cursor or rewrite the operator's terminal, so control characters become spaces.
 */
export function cleanText(s: string, max = MAX_DETAIL): string {
  const flat = s.replace(/[\x00-\x1f\x7f-\x9f]+/g, ' ').replace(/ {2,}/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max - 3)}...` : flat;
}

function isStringArray(v: unknown): v is string[] {
  return Array.isArray(v) && v.every((x) => typeof x === 'string');
}

/** The script's JSON result: the last line of stdout that parses as one of its two shapes. */
export function parseScriptOutput(stdout: string): ScriptResult | undefined {
  const lines = stdout.split('\n').map((l) => l.trim()).filter((l) => l.startsWith('{'));
  for (let i = lines.length - 1; i >= 0; i--) {
    let v: unknown;
    try {
      v = JSON.parse(lines[i] ?? '');
    } catch {
      continue;
    }
    if (typeof v !== 'object' || v === null) continue;
    const o = v as Record<string, unknown>;
    if ((o['action'] === 'add' || o['action'] === 'remove') && typeof o['changed'] === 'boolean' &&
        isStringArray(o['changes']) && isStringArray(o['unchanged']) && isStringArray(o['notes'])) {
      return { action: o['action'], changed: o['changed'], changes: o['changes'], unchanged: o['unchanged'], notes: o['notes'] };
    }
    const checks = o['checks'];
    if (typeof o['ok'] === 'boolean' && Array.isArray(checks) &&
        checks.every((c: unknown) => typeof c === 'object' && c !== null &&
          typeof (c as Record<string, unknown>)['name'] === 'string' &&
          typeof (c as Record<string, unknown>)['ok'] === 'boolean' &&
          typeof (c as Record<string, unknown>)['detail'] === 'string')) {
      return { ok: o['ok'], checks: checks as CheckResult['checks'] };
    }
  }
  return undefined;
}

function isCheck(r: ScriptResult): r is CheckResult {
  return 'checks' in r;
}

/** One line about a result, for the table. */
export function summarize(r: ScriptResult): string {
  if (isCheck(r)) {
    const bad = r.checks.filter((c) => !c.ok);
    if (bad.length === 0) return `all ${r.checks.length} checks ok`;
    return `missing: ${bad.map((c) => `${c.name} (${c.detail})`).join('; ')}`;
  }
  const notes = r.notes.map((n) => `note: ${n}`);
  const main = r.changes.length > 0 ? `changed: ${r.changes.join('; ')}` : 'nothing to change';
  return [main, ...notes].join('; ');
}

/** The script's own error lines (`server-prep: error: ...`, `server-prep: usage error: ...`). */
function scriptErrors(stderr: string): string[] {
  return stderr
    .split('\n')
    .map((l) => /^server-prep: (?:usage )?error: (.*)$/.exec(l.trim())?.[1])
    .filter((m): m is string => m !== undefined && m !== '');
}

/** Turn a finished run into a host outcome. `sudo`: the command went through `sudo -n`. */
export function classifyRun(raw: RawRun, sudo: boolean): Classified {
  const result = parseScriptOutput(raw.stdout);
  const lastErr = raw.stderr.trim().split('\n').filter((l) => l.trim() !== '').at(-1) ?? '';
  if (raw.code === 0 && result) {
    return { ok: true, status: 'done', detail: cleanText(summarize(result)), result };
  }
  if (result && 'checks' in result && raw.code === 1) {
    return { ok: false, status: 'failed', detail: cleanText(summarize(result)), result };
  }
  if (sudo && !result && /^sudo: /m.test(raw.stderr)) {
    const line = raw.stderr.split('\n').find((l) => l.startsWith('sudo: ')) ?? 'sudo: refused';
    return {
      ok: false,
      status: 'auth',
      detail: cleanText(`${line}: the login user needs passwordless sudo (NOPASSWD) for bash, or log in as root`),
    };
  }
  const errs = scriptErrors(raw.stderr);
  if (raw.code === 2) {
    return { ok: false, status: 'failed', detail: cleanText(`server-prep refused the arguments: ${errs.join('; ') || lastErr}`) };
  }
  if (raw.code === 0) {
    return { ok: false, status: 'failed', detail: cleanText(`server-prep exited 0 but printed no result${lastErr ? `: ${lastErr}` : ''}`) };
  }
  const how = raw.code === null ? `killed by ${raw.signal ?? 'a signal'}` : `exit status ${raw.code}`;
  const why = errs.length > 0 ? errs.join('; ') : lastErr;
  if (raw.code === 127) {
    return { ok: false, status: 'failed', detail: cleanText(`bash not found on the host (${how})${why ? `: ${why}` : ''}`) };
  }
  return { ok: false, status: 'failed', detail: cleanText(`server-prep failed (${how})${why ? `: ${why}` : ''}`), ...(result ? { result } : {}) };
}
