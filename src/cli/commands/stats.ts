import type { Command } from 'commander';
import type { ServiceView } from '../../daemon/daemon.js';
import { LbError } from '../../errors.js';
import { act, api, emit } from '../context.js';
import { formatServices, table } from '../output.js';

interface StatsAnswer {
  services: ServiceView[];
  reasons: Record<string, number>;
}

function render(s: StatsAnswer): string {
  const verdicts = Object.entries(s.reasons).filter(([, v]) => v > 0);
  return (
    formatServices(s.services, { stats: true, rate: true }) +
    '\n\nverdicts\n' +
    (verdicts.length ? table(verdicts.map(([k, v]) => [k, String(v)]), { indent: '  ' }) : '  (none yet)')
  );
}

export function registerStats(program: Command): void {
  program
    .command('stats')
    .description('counters and rates per service and backend, and the data path\'s verdict counters')
    .option('-w, --watch', 'redraw every interval until interrupted')
    .option('-i, --interval <seconds>', 'watch interval', '2')
    .option('--count <n>', 'with --watch: stop after n screens')
    .option('--json', 'JSON for scripts (with --watch: one JSON object per line)')
    .addHelpText('after', '\nExamples:\n  lbctl stats\n  lbctl stats --watch -i 1')
    .action(
      act(async (opts: { watch?: boolean; interval: string; count?: string; json?: boolean }, cmd: Command) => {
        const call = api(cmd);
        const get = () => call<StatsAnswer>('GET', '/v1/stats');
        if (!opts.watch) {
          const s = await get();
          return { data: s, text: render(s) };
        }
        const every = Number(opts.interval);
        if (!(every >= 0.2 && every <= 3600)) throw new LbError('ERR_LB_USAGE', `--interval ${opts.interval}: want 0.2 to 3600 seconds`);
        const count = opts.count === undefined ? Infinity : Number(opts.count);
        for (let i = 0; i < count; i++) {
          const s = await get();
          if (opts.json) process.stdout.write(`${JSON.stringify(s)}\n`);
          else {
            if (process.stdout.isTTY) process.stdout.write('\x1b[H\x1b[2J');
            emit({ data: s, text: `${new Date().toISOString()}  (every ${every} s, Ctrl-C to stop)\n${render(s)}` }, false);
          }
          if (i + 1 < count) await new Promise((r) => setTimeout(r, every * 1000));
        }
        return { data: null, text: '' };
      }),
    );
}
