/**
 * One pino root logger for the daemon; every subsystem logs through `child({ component })`.
 * JSON lines by default (what journald and log shippers want); pretty lines when stderr is a
 * terminal and pino-pretty is installed, because a person is watching.
 */
import { createRequire } from 'node:module';
import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

function prettyAvailable(): boolean {
  try {
    createRequire(import.meta.url).resolve('pino-pretty');
    return true;
  } catch {
    return false;
  }
}

export function createLogger(level: LevelWithSilent, opts: { pretty?: boolean } = {}): Logger {
  const pretty = opts.pretty ?? (process.stderr.isTTY && prettyAvailable());
  if (pretty) {
    return pino({
      level,
      base: { pid: process.pid },
      transport: { target: 'pino-pretty', options: { destination: 2, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' } },
    });
  }
  return pino({ level, base: { pid: process.pid } }, pino.destination({ dest: 2, sync: true }));
}
