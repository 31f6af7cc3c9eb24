import type { Command } from 'commander';
import { runDaemon } from '../../daemon/run.js';

export function registerDaemon(program: Command): void {
  program
    .command('daemon')
    .description('run the load balancer daemon in the foreground (systemd runs this)')
    .requiredOption('-c, --config <file>', 'the config file the daemon owns (YAML or JSON)')
    .option('--log-level <level>', 'override node.log.level (trace|debug|info|warn|error)')
    .addHelpText(
      'after',
      `
The daemon loads and pins the XDP program, attaches it, fills the maps from the config,
health-checks the backends and serves the API lbctl talks to. Stopping it (SIGTERM, or even
SIGKILL) leaves the data path forwarding with the last state; a restarted daemon adopts it
without dropping traffic. SIGHUP reloads the config file. To take the data path down:
  lbctl stop --detach

Example:
  lbctl daemon --config /etc/xdplb/config.yaml`,
    )
    .action(async (opts: { config: string; logLevel?: string }) => {
      const root = program.opts<{ socket?: string }>();
      process.exitCode = await runDaemon({
        configPath: opts.config,
        ...(opts.logLevel ? { logLevel: opts.logLevel } : {}),
        ...(root.socket ? { socket: root.socket } : {}),
      });
    });
}
