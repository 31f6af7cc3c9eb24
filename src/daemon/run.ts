/**
 * `lbctl daemon`: start, serve, and stop in a fixed order. SIGTERM/SIGINT stop the control plane
 * and leave the data path forwarding; SIGHUP reloads the config file (a broken file is logged and
 * changes nothing). `lbctl stop --detach` is the way to take the data path down.
 */
import type { Server } from 'node:http';
import { loadConfigFile } from '../config/index.js';
import { Daemon } from './daemon.js';
import { createLogger, type Logger } from './logger.js';
import { startApi } from '../api/server.js';
import { startMetrics } from './metrics.js';

export interface RunOptions {
  configPath: string;
  logLevel?: string;
  /** override node.api.socket (tests, several daemons on one host) */
  socket?: string;
}

function close(server: Server | undefined): Promise<void> {
  return new Promise((resolve) => (server ? server.close(() => resolve()) : resolve()));
}

export async function runDaemon(opts: RunOptions): Promise<number> {
  const cfg = loadConfigFile(opts.configPath);
  const log: Logger = createLogger((opts.logLevel ?? cfg.node.log.level) as 'info');
  const daemon = await Daemon.start({ configPath: opts.configPath, log });
  let api: Server | undefined;
  let metrics: Server | undefined;
  let done!: (code: number) => void;
  const finished = new Promise<number>((r) => (done = r));
  let stopping = false;
  const stop = (detach: boolean, why: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ component: 'daemon', why, detach }, 'stopping');
    void (async () => {
      await close(api);
      await close(metrics);
      await daemon.stop({ detach });
      done(0);
    })().catch((e: unknown) => {
      log.error({ component: 'daemon', err: e }, 'stop failed');
      done(1);
    });
  };
  try {
    api = await startApi(daemon, opts.socket ?? cfg.node.api.socket, log, (detach) => stop(detach, 'lbctl stop'));
    const m = daemon.config.node.metrics;
    if (m) metrics = await startMetrics(daemon, m.listen, m.port, log);
  } catch (e) {
    await close(api);
    await daemon.stop({ detach: false });
    throw e;
  }
  process.on('SIGTERM', () => stop(false, 'SIGTERM'));
  process.on('SIGINT', () => stop(false, 'SIGINT'));
  process.on('SIGHUP', () => {
    try {
      daemon.reload();
      log.info({ component: 'daemon' }, 'reloaded on SIGHUP');
    } catch (e) {
      log.error({ component: 'daemon', err: e }, 'reload refused: the running state is unchanged');
    }
  });
  return finished;
}
