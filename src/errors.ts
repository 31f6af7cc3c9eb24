/**
 * One error type for the whole project. Every failure a user can meet carries a stable
 * `ERR_LB_*` code, a message that says what happened, and where possible a hint that says
 * what to do. The CLI's top level is the one place that turns these into output and an exit
 * status: usage and config errors exit 2, everything else 1.
 */

export type LbErrorKind = 'usage' | 'config' | 'runtime';

/** Every code the project raises, with the kind that decides the exit status. Never reuse a code. */
export const ERROR_CODES = {
  ERR_LB_USAGE: 'usage',
  ERR_LB_CONFIG: 'config',
  ERR_LB_BPF_OPEN: 'runtime',
  ERR_LB_BPF_LOAD: 'runtime',
  ERR_LB_BPF_VERIFIER: 'runtime',
  ERR_LB_BPF_MAP: 'runtime',
  ERR_LB_BPF_PIN: 'runtime',
  ERR_LB_BPF_ATTACH: 'runtime',
  ERR_LB_BPF_TEST_RUN: 'runtime',
  ERR_LB_BPF_BTF: 'runtime',
  ERR_LB_NO_INTERFACE: 'runtime',
  ERR_LB_ABI_MISMATCH: 'runtime',
  ERR_LB_DATAPLANE: 'runtime',
  ERR_LB_LAB: 'runtime',
  ERR_LB_EXEC: 'runtime',
  ERR_LB_API: 'runtime',
  ERR_LB_SSH: 'runtime',
  ERR_LB_HEALTH: 'runtime',
} as const satisfies Record<string, LbErrorKind>;

export type LbErrorCode = keyof typeof ERROR_CODES;

export interface LbErrorOptions {
  hint?: string;
  cause?: unknown;
  /** errno name (EPERM, ENOENT ...) when the failure came from a system call */
  errno?: string;
  /** extra structured detail, e.g. the verifier log or a list of config violations */
  detail?: string;
}

export class LbError extends Error {
  readonly code: LbErrorCode;
  readonly hint: string | undefined;
  readonly errno: string | undefined;
  readonly detail: string | undefined;

  constructor(code: LbErrorCode, message: string, opts: LbErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'LbError';
    this.code = code;
    this.hint = opts.hint;
    this.errno = opts.errno;
    this.detail = opts.detail;
  }

  get kind(): LbErrorKind {
    return ERROR_CODES[this.code];
  }

  /** Exit status for the CLI: 2 for usage/config errors, 1 for runtime failures. */
  get exitCode(): number {
    return this.kind === 'runtime' ? 1 : 2;
  }
}

export function isLbError(e: unknown): e is LbError {
  return e instanceof LbError;
}
