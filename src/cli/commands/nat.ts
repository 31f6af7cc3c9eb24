import type { Command } from 'commander';
import type { NatConnection, NatCount } from '../../dataplane/nat.js';
import { LbError } from '../../errors.js';
import { act, api } from '../context.js';
import { hostPort as ep, table } from '../output.js';

export interface NatAnswer {
  count: NatCount;
  connections: NatConnection[];
}


/** The `lbctl nat list` table and its count line. */
export function formatNat(r: NatAnswer): string {
  const rows = [['Prot', 'Client', 'VIP', 'Source seen by backend', 'Backend', 'State', 'Idle', 'Expires']];
  for (const c of r.connections) {
    rows.push([
      c.proto.toUpperCase(),
      ep(c.client, c.clientPort),
      ep(c.vip, c.vipPort),
      c.fullNat ? ep(c.source, c.sourcePort) : '(client)',
      ep(c.backend, c.backendPort),
      c.state,
      `${(c.idleMs / 1000).toFixed(1)}s`,
      c.expiresInMs > 0 ? `${(c.expiresInMs / 1000).toFixed(0)}s` : 'expired',
    ]);
  }
  return `${table(rows)}\n${countText(r.count)}`;
}

function countText(c: NatCount): string {
  const states = Object.entries(c.byState).filter(([, n]) => n > 0).map(([s, n]) => `${s} ${n}`).join(', ');
  return `${c.connections} connections (${c.fullNat} full NAT${states ? `; ${states}` : ''}), ${c.expired} expired awaiting the sweeper, ${c.orphans} half-built`;
}

export function registerNat(program: Command): void {
  const nat = program.command('nat').description('the NAT connection table: what is translated right now');
  nat
    .command('list')
    .alias('ls')
    .description('NAT connections, both sides of each translation (like conntrack -L); IPv6 as [addr]:port')
    .option('--limit <n>', 'at most this many', '1000')
    .option('--json', 'JSON for scripts')
    .addHelpText('after', '\nExample:\n  lbctl nat list --limit 20')
    .action(
      act(async (o: { limit: string }, cmd: Command) => {
        if (!/^\d+$/.test(o.limit)) throw new LbError('ERR_LB_USAGE', `--limit ${o.limit} is not a whole number`);
        const r = await api(cmd)<NatAnswer>('GET', `/v1/nat?limit=${o.limit}`);
        return { data: r, text: formatNat(r) };
      }),
    );
  nat
    .command('count')
    .description('how many NAT connections, by state')
    .option('--json', 'JSON for scripts')
    .action(
      act(async (_o: object, cmd: Command) => {
        const r = await api(cmd)<NatAnswer>('GET', '/v1/nat?limit=0');
        return { data: r.count, text: countText(r.count) };
      }),
    );
}
