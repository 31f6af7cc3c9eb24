/**
 * lbctl's command tree (every subcommand lives in commands/) and the one place that turns
 * errors into messages and exit statuses: 0 ok, 1 failure, 2 usage or config error.
 */
import { Command, CommanderError } from 'commander';
import { LbError } from '../errors.js';
import { VERSION } from '../version.js';
import { registerApply } from './commands/apply.js';
import { registerBackend } from './commands/backend.js';
import { registerCompletion } from './commands/completion.js';
import { registerDaemon } from './commands/daemon.js';
import { registerLab } from './commands/lab.js';
import { registerList } from './commands/list.js';
import { registerNat } from './commands/nat.js';
import { registerServer } from './commands/server.js';
import { registerService } from './commands/service.js';
import { registerStats } from './commands/stats.js';
import { registerStatus } from './commands/status.js';
import { registerStop } from './commands/stop.js';

export function buildProgram(): Command {
  const program = new Command('lbctl')
    .description('xdplb: an XDP load balancer (Maglev, L2 DSR, IPIP DSR, NAT). lbctl talks to its daemon.')
    .version(VERSION, '-V, --version')
    .option('--socket <path>', 'the daemon\'s API socket (env XDPLB_SOCKET)', undefined)
    .showHelpAfterError('(lbctl --help lists the commands)')
    .addHelpText(
      'after',
      `
Examples:
  lbctl daemon --config /etc/xdplb/config.yaml   # run the daemon (systemd: xdplb.service)
  lbctl list --stats                             # services, backends, health, flows
  lbctl backend drain web 10.0.0.13 --wait       # stop new flows, wait for the rest
  lbctl apply -f /etc/xdplb/config.yaml          # replace the config: all or nothing

Exit status: 0 ok, 1 failure, 2 usage or config error.`,
    );
  registerDaemon(program);
  registerApply(program);
  registerList(program);
  registerService(program);
  registerBackend(program);
  registerStats(program);
  registerStatus(program);
  registerStop(program);
  registerNat(program);
  registerLab(program);
  registerServer(program);
  registerCompletion(program);
  for (const c of walk(program)) c.exitOverride();
  return program;
}

function walk(c: Command): Command[] {
  return [c, ...c.commands.flatMap(walk)];
}

export function report(e: unknown): number {
  if (e instanceof CommanderError) {
    // commander already printed its message (or the help/version it was asked for)
    return e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.exitCode === 0 ? 0 : 2;
  }
  if (e instanceof LbError) {
    let s = `lbctl: ${e.message}${e.errno ? ` (${e.errno})` : ''}\n`;
    if (e.detail) s += e.detail.replace(/^/gm, '  ') + '\n';
    if (e.hint) s += `  hint: ${e.hint}\n`;
    process.stderr.write(s);
    return e.exitCode;
  }
  process.stderr.write(`lbctl: unexpected error: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
  return 1;
}

export async function main(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    return report(e);
  }
}

