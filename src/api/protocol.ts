/**
 * The API's wire shape, shared by server and client: HTTP+JSON on a Unix socket. Errors travel as
 * `{ error: { code, message, hint?, detail? } }` so the client can rethrow the same LbError and
 * `lbctl` exits with the same status the daemon would have.
 */
import { ERROR_CODES, LbError, type LbErrorCode } from '../errors.js';

export const DEFAULT_SOCKET = '/run/xdplb/lbctl.sock';

export interface WireError {
  code: string;
  message: string;
  hint?: string;
  detail?: string;
}

export function toWire(e: unknown): { status: number; body: { error: WireError } } {
  if (e instanceof LbError) {
    const status = e.kind === 'runtime' ? 500 : 400;
    return {
      status,
      body: {
        error: {
          code: e.code,
          message: e.message,
          ...(e.hint ? { hint: e.hint } : {}),
          ...(e.detail ? { detail: e.detail } : {}),
        },
      },
    };
  }
  return { status: 500, body: { error: { code: 'ERR_LB_API', message: e instanceof Error ? e.message : String(e) } } };
}

export function fromWire(w: WireError): LbError {
  const code = (w.code in ERROR_CODES ? w.code : 'ERR_LB_API') as LbErrorCode;
  return new LbError(code, w.message, {
    ...(w.hint ? { hint: w.hint } : {}),
    ...(w.detail ? { detail: w.detail } : {}),
  });
}
