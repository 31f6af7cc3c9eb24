import type { Command } from 'commander';
import { loadConfigFile } from '../../config/index.js';
import { detachOffline } from '../../daemon/daemon.js';
import { LbError } from '../../errors.js';
import { act, api } from '../context.js';

export function registerStop(program: Command): void {
  program
    .command('stop')
    .description('stop the daemon; the data path keeps forwarding unless --detach')
    .option('--detach', 'also detach XDP and remove the pinned maps: traffic to the VIPs stops')
    .option('-c, --config <file>', 'with --detach and no daemon running: detach what this config attached')
    .option('--json', 'JSON for scripts')
    .addHelpText('after', '\nExamples:\n  lbctl stop                      # restart-safe: forwarding continues\n  lbctl stop --detach             # take the load balancer out of the path\n  lbctl stop --detach -c /etc/xdplb/config.yaml   # no daemon running')
    .action(
      act(async (opts: { detach?: boolean; config?: string }, cmd: Command) => {
        if (opts.config) {
          if (!opts.detach) throw new LbError('ERR_LB_USAGE', '--config only makes sense with --detach');
          const cfg = loadConfigFile(opts.config);
          const done = detachOffline(cfg);
          return { data: { detached: done, pins: cfg.node.bpffs }, text: `detached from ${done.join(', ') || 'nothing'}; removed ${cfg.node.bpffs}` };
        }
        const r = await api(cmd)<{ stopping: boolean; detach: boolean }>('POST', '/v1/stop', { detach: !!opts.detach });
        return {
          data: r,
          text: r.detach ? 'daemon stopping; XDP detached and pins removed' : 'daemon stopping; the data path keeps forwarding (lbctl stop --detach removes it)',
        };
      }),
    );
}
