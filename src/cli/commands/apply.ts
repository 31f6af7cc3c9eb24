import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { parseConfig } from '../../config/index.js';
import type { ApplyReport } from '../../dataplane/apply.js';
import { LbError } from '../../errors.js';
import { act, api } from '../context.js';

function readText(file: string): string {
  try {
    return file === '-' ? readFileSync(0, 'utf8') : readFileSync(file, 'utf8');
  } catch (e) {
    throw new LbError('ERR_LB_USAGE', `cannot read ${file}: ${(e as Error).message}`);
  }
}

export function summarize(r: ApplyReport): string {
  const w = r.writes;
  const total = w.services + w.backends + w.ringSlots + w.ringChunks + w.vipFilter;
  if (total === 0) return 'no change: nothing written';
  return (
    `services +${r.services.added} -${r.services.removed} ~${r.services.changed}, ` +
    `backends +${r.backends.added} -${r.backends.removed} ~${r.backends.changed}; ` +
    `${total} map writes (${w.ringSlots} ring slots)`
  );
}

export function registerApply(program: Command): void {
  program
    .command('apply')
    .description('replace the daemon\'s config with FILE: validated as a whole, written atomically, then applied')
    .requiredOption('-f, --file <file>', 'config file (YAML or JSON); - for stdin')
    .option('--json', 'print the apply report as JSON')
    .addHelpText('after', '\nA rejected file changes nothing: not the running state, not the daemon\'s config file.\n\nExample:\n  lbctl apply -f /etc/xdplb/new.yaml')
    .action(
      act(async (opts: { file: string }, cmd: Command) => {
        const text = readText(opts.file);
        const { report } = await api(cmd)<{ report: ApplyReport }>('POST', '/v1/apply', { text });
        return { data: report, text: `applied: ${summarize(report)}` };
      }),
    );
  program
    .command('validate')
    .description('check a config file without a daemon; lists every problem with its path')
    .requiredOption('-f, --file <file>', 'config file (YAML or JSON); - for stdin')
    .option('--json', 'print the normalized config as JSON')
    .addHelpText('after', '\nExample:\n  lbctl validate -f config.yaml')
    .action(
      act(async (opts: { file: string }) => {
        const cfg = parseConfig(readText(opts.file), opts.file);
        const n = cfg.services.reduce((a, s) => a + s.backends.length, 0);
        return { data: cfg, text: `${opts.file}: ok (${cfg.services.length} services, ${n} backends)` };
      }),
    );
}
