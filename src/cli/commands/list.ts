import type { Command } from 'commander';
import type { ServiceView } from '../../daemon/daemon.js';
import { enc } from '../../api/client.js';
import { act, api } from '../context.js';
import { formatServices } from '../output.js';

interface ListOpts {
  stats?: boolean;
  rate?: boolean;
}

export function registerList(program: Command): void {
  const list = async (service: string | undefined, opts: ListOpts, cmd: Command) => {
    const q = `?stats=${opts.stats ? 1 : 0}&rate=${opts.rate ? 1 : 0}`;
    const call = api(cmd);
    const services = service
      ? [await call<ServiceView>('GET', `/v1/services/${enc(service)}${q}`)]
      : await call<ServiceView[]>('GET', `/v1/services${q}`);
    return { data: service ? services[0] : services, text: formatServices(services, opts) };
  };
  program
    .command('list')
    .alias('ls')
    .description('services with their backends: weight, health, ring share, active flows (like ipvsadm -L -n)')
    .argument('[service]', 'one service: its name or VIP:PORT/PROTO ([VIP]:PORT/PROTO for IPv6)')
    .option('--stats', 'add packet, byte and new-flow counters')
    .option('--rate', 'add rates (packets/s, bits/s, new flows/s) over the last 2 s')
    .option('--json', 'JSON for scripts')
    .addHelpText(
      'after',
      `
Columns: Ring is the backend's share of the Maglev table (its share of new flows); ActFlows
counts flow-table entries seen in the last 30 s; Health is up, down, unknown or drain
(weight 0), with the reason a backend is out of the ring in parentheses.

Examples:
  lbctl list
  lbctl list web --stats --rate
  lbctl list 10.0.0.10:80/tcp --json
  lbctl list '[2001:db8::10]:443'`,
    )
    .action(act(list));
  program
    .command('get')
    .description('one service, like `list SERVICE`')
    .argument('<service>', 'its name or VIP:PORT/PROTO ([VIP]:PORT/PROTO for IPv6)')
    .option('--stats', 'add counters')
    .option('--rate', 'add rates')
    .option('--json', 'JSON for scripts')
    .action(act(list));
}
