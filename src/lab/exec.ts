/**
 * Running commands for the lab: in the root namespace (`run`) or inside a lab namespace (`exec`,
 * through `ip netns exec`). Always an argv array handed to the kernel's exec, never a shell string
 * with values pasted in; always a timeout; a failure is an `LbError` that names the command, its exit
 * status and its stderr.
 */
import { spawn } from 'node:child_process';
import { LbError, type LbErrorCode } from '../errors.js';

export interface ExecOptions {
  /** Kill the command (SIGKILL) after this long. Default 10 s. */
  timeoutMs?: number;
  /** Written to the command's stdin, which is then closed. */
  input?: string;
  /** Resolve instead of throwing when the command exits non-zero (a timeout still throws). */
  allowFail?: boolean;
  /** Error code for a failure. Default `ERR_LB_EXEC`. */
  code?: Extract<LbErrorCode, 'ERR_LB_EXEC' | 'ERR_LB_LAB'>;
  /** Stop collecting output beyond this many bytes per stream. Default 16 MiB. */
  maxBuffer?: number;
}

export interface ExecResult {
  stdout: string;
  stderr: string;
  /** Exit status; null when the command died of a signal. */
  status: number | null;
  signal: NodeJS.Signals | null;
}

const DEFAULT_TIMEOUT_MS = 10_000;
const DEFAULT_MAX_BUFFER = 16 * 1024 * 1024;

/** Quote an argv for messages only (it is never handed to a shell). */
export function formatArgv(argv: readonly string[]): string {
  return argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

/** Run `argv` in the current (root) network namespace. */
export function run(argv: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
  const [file, ...args] = argv;
  if (file === undefined) {
    return Promise.reject(new LbError('ERR_LB_EXEC', 'empty command'));
  }
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const maxBuffer = opts.maxBuffer ?? DEFAULT_MAX_BUFFER;
  const code = opts.code ?? 'ERR_LB_EXEC';
  const shown = formatArgv(argv);

  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let outLen = 0;
    let errLen = 0;
    let timedOut = false;
    let settled = false;

    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);

    child.stdout.on('data', (b: Buffer) => {
      if (outLen < maxBuffer) out.push(b);
      outLen += b.length;
    });
    child.stderr.on('data', (b: Buffer) => {
      if (errLen < maxBuffer) err.push(b);
      errLen += b.length;
    });
    // A command that exits before reading its stdin must not crash us with EPIPE.
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');

    child.on('error', (e: NodeJS.ErrnoException) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(
        new LbError(code, `cannot run ${shown}: ${e.message}`, {
          cause: e,
          ...(e.code === undefined ? {} : { errno: e.code }),
          hint: e.code === 'ENOENT' ? `is ${file} installed? (make deps)` : undefined,
        }),
      );
    });

    child.on('close', (status, signal) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      const stdout = Buffer.concat(out).toString('utf8');
      const stderr = Buffer.concat(err).toString('utf8');
      if (timedOut) {
        reject(
          new LbError(code, `timed out after ${timeoutMs} ms: ${shown}`, {
            detail: stderr.trim() || undefined,
          }),
        );
        return;
      }
      if (status !== 0 && !opts.allowFail) {
        const why = status === null ? `killed by ${signal ?? 'a signal'}` : `exit status ${status}`;
        const firstLine = stderr.trim().split('\n')[0] ?? '';
        reject(
          new LbError(code, `command failed (${why}): ${shown}${firstLine ? `: ${firstLine}` : ''}`, {
            detail: stderr.trim() || undefined,
          }),
        );
        return;
      }
      resolve({ stdout, stderr, status, signal });
    });
  });
}

/** Run `argv` inside network namespace `ns` (`ip netns exec ns argv...`). */
export function exec(ns: string, argv: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
  return run(['ip', 'netns', 'exec', ns, ...argv], opts);
}

/**
 * Feed `lines` to one `ip -batch -` process (in namespace `ns` when given): one process for many
 * link/addr/route commands. `force` continues past failing lines (used for teardown).
 */
export function ipBatch(
  ns: string | null,
  lines: readonly string[],
  opts: ExecOptions & { force?: boolean } = {},
): Promise<ExecResult> {
  const argv = ['ip'];
  if (ns !== null) argv.push('-n', ns);
  if (opts.force) argv.push('-force');
  argv.push('-batch', '-');
  return run(argv, { ...opts, input: lines.join('\n') + '\n' });
}
