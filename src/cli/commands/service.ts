import { Option, type Command } from 'commander';
import type { ApplyReport } from '../../dataplane/apply.js';
import { enc } from '../../api/client.js';
import { LbError } from '../../errors.js';
import { act, api } from '../context.js';
import { summarize } from './apply.js';

/** VIP:PORT[/PROTO], IPv6 as [addr]:port/proto. The config validates the pieces. */
export function parseVipPort(s: string): { vip: string; port: number; proto?: string } {
  const m = /^(?:\[([^\]]+)\]|([^:/\[\]]+)):(\d{1,5})(?:\/(tcp|udp))?$/.exec(s);
  if (!m) throw new LbError('ERR_LB_USAGE', `"${s}" is not VIP:PORT[/PROTO]`, { hint: 'e.g. 10.0.0.10:80/tcp or [2001:db8::10]:443' });
  return { vip: (m[1] ?? m[2])!, port: Number(m[3]), ...(m[4] ? { proto: m[4] } : {}) };
}

interface SvcOpts {
  mode?: string;
  proto?: string;
  name?: string;
  hashSourceOnly?: boolean;
  onAllDown?: string;
  check?: string;
  backend?: string[];
}

function svcFields(o: SvcOpts): Record<string, unknown> {
  return {
    ...(o.mode ? { mode: o.mode } : {}),
    ...(o.hashSourceOnly !== undefined ? { hashSourceOnly: o.hashSourceOnly } : {}),
    ...(o.onAllDown ? { onAllDown: o.onAllDown } : {}),
    ...(o.check ? { healthCheck: { type: o.check } } : {}),
  };
}

const modeOpt = () => new Option('-m, --mode <mode>', 'forwarding mode').choices(['l2dsr', 'ipip', 'nat']);
const downOpt = () => new Option('--on-all-down <what>', 'new flows when no backend is usable').choices(['drop', 'pass']);
const checkOpt = () => new Option('--check <type>', 'health check type (tune it in the config file)').choices(['none', 'tcp', 'http', 'https', 'udp', 'exec']);

export function registerService(program: Command): void {
  const svc = program
    .command('service')
    .description('add, change or delete a service (persisted to the daemon\'s config file)');
  svc
    .command('add')
    .description('add a service')
    .argument('<vip:port>', 'VIP:PORT[/PROTO], e.g. 10.0.0.10:80 or [2001:db8::10]:443/tcp')
    .addOption(modeOpt().makeOptionMandatory())
    .option('--name <name>', 'a name to refer to it by')
    .option('--hash-source-only', 'send each client to one backend whatever its ports (persistence)')
    .addOption(downOpt())
    .addOption(checkOpt())
    .option('-b, --backend <address>', 'a backend (repeat for more), weight 1', (v: string, acc: string[] = []) => [...acc, v])
    .option('--json', 'print the apply report as JSON')
    .addHelpText(
      'after',
      "\nExamples:\n  lbctl service add 10.0.0.10:80 --mode l2dsr --name web -b 10.0.0.11 -b 10.0.0.12\n  lbctl service add '[2001:db8::10]:443' --mode l2dsr -b 2001:db8::11   # quote the brackets for the shell",
    )
    .action(
      act(async (vp: string, o: SvcOpts, cmd: Command) => {
        const { vip, port, proto } = parseVipPort(vp);
        const raw = {
          vip,
          port,
          ...(proto ? { proto } : {}),
          ...(o.name ? { name: o.name } : {}),
          ...svcFields(o),
          backends: (o.backend ?? []).map((address) => ({ address })),
        };
        const { report } = await api(cmd)<{ report: ApplyReport }>('POST', '/v1/services', { service: raw });
        return { data: report, text: `service added: ${summarize(report)}` };
      }),
    );
  svc
    .command('set')
    .description('change a service\'s options')
    .argument('<service>', 'name or VIP:PORT/PROTO ([VIP]:PORT/PROTO for IPv6)')
    .addOption(modeOpt())
    .option('--hash-source-only', 'hash the client address only')
    .option('--no-hash-source-only', 'hash the whole 5-tuple')
    .addOption(downOpt())
    .addOption(checkOpt())
    .option('--json', 'print the apply report as JSON')
    .addHelpText('after', '\nExample:\n  lbctl service set web --on-all-down pass')
    .action(
      act(async (key: string, o: SvcOpts, cmd: Command) => {
        const patch = svcFields(o);
        if (!Object.keys(patch).length) throw new LbError('ERR_LB_USAGE', 'nothing to change', { hint: 'see lbctl service set --help' });
        const { report } = await api(cmd)<{ report: ApplyReport }>('PATCH', `/v1/services/${enc(key)}`, { patch });
        return { data: report, text: `service changed: ${summarize(report)}` };
      }),
    );
  svc
    .command('del')
    .alias('delete')
    .description('delete a service (its VIP stops being balanced at once)')
    .argument('<service>', 'name or VIP:PORT/PROTO ([VIP]:PORT/PROTO for IPv6)')
    .option('--json', 'print the apply report as JSON')
    .action(
      act(async (key: string, _o: object, cmd: Command) => {
        const { report } = await api(cmd)<{ report: ApplyReport }>('DELETE', `/v1/services/${enc(key)}`);
        return { data: report, text: `service deleted: ${summarize(report)}` };
      }),
    );
}
