/**
 * What every subcommand shares: the API socket, and one way to hand back a result. Handlers
 * return `{ data, text }`; `emit` prints JSON for scripts (--json) or the text for people.
 */
import type { Command } from 'commander';
import { call, socketPath } from '../api/client.js';

export interface Result {
  data: unknown;
  /** for people; default: JSON anyway */
  text?: string;
  /** non-zero when the command "worked" but the answer is bad news (e.g. a failed host) */
  exitCode?: number;
}

export function emit(r: Result, json: boolean | undefined): void {
  const s = json || r.text === undefined ? JSON.stringify(r.data, null, 2) : r.text;
  process.stdout.write(s.endsWith('\n') ? s : `${s}\n`);
  if (r.exitCode) process.exitCode = r.exitCode;
}

/** The socket chosen on the top-level command (--socket), the environment, or the default. */
export function api(cmd: Command): <T>(method: string, path: string, body?: unknown) => Promise<T> {
  let root = cmd;
  while (root.parent) root = root.parent;
  const sock = socketPath(root.opts<{ socket?: string }>().socket);
  return <T>(method: string, path: string, body?: unknown) => call<T>(sock, method, path, body);
}

/** Commander action wrapper: run the handler, print what it returns. Errors go to main. */
export function act<A extends unknown[]>(
  fn: (...args: A) => Promise<Result>,
): (...args: A) => Promise<void> {
  return async (...args: A) => {
    const cmd = args[args.length - 1] as Command;
    const r = await fn(...args);
    emit(r, cmd.opts<{ json?: boolean }>().json);
  };
}
