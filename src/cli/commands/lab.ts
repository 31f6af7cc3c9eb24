import type { Command } from 'commander';
import { call } from '../../api/client.js';
import type { ServiceView } from '../../daemon/daemon.js';
import { DEFAULT_PREFIX, labDown, labStatus, labUp, stateDirOf } from '../../lab/index.js';
import { labSummary, readLabDaemon, startLabDaemon, stopLabDaemon, waitLabHealthy } from '../../lab/daemon.js';
import { act } from '../context.js';
import { formatServices, hostPort, table } from '../output.js';

export function registerLab(program: Command): void {
  const lab = program
    .command('lab')
    .description('the namespace lab: client, router, LB and backends on this machine, with the daemon running')
    .addHelpText(
      'after',
      `
Examples:
  lbctl lab up --json                        # bring it up; prints client, backends, services
  ip netns exec xlb-client curl http://10.200.100.1/
  lbctl --socket /run/xdplb/lab/xlb-/lbctl.sock list --stats
  lbctl lab down                             # remove everything, also after a crash`,
    );
  lab
    .command('up')
    .description('build the lab, start the daemon with one service per mode, wait until the backends are healthy')
    .option('--prefix <prefix>', 'namespace name prefix', DEFAULT_PREFIX)
    .option('--no-daemon', 'only the namespaces and servers, no load balancer')
    .option('--json', 'print the lab description as one JSON object')
    .action(
      act(async (o: { prefix: string; daemon: boolean }) => {
        await stopLabDaemon(stateDirOf(o.prefix), o.prefix);
        await labDown(o.prefix);
        const l = await labUp({ prefix: o.prefix });
        let d = null;
        let views: ServiceView[] = [];
        try {
          if (o.daemon) {
            d = await startLabDaemon(l);
            views = await waitLabHealthy(d);
          }
        } catch (e) {
          await stopLabDaemon(l.stateDir, o.prefix);
          await labDown(o.prefix);
          throw e;
        }
        const s = labSummary(l, d);
        const text = [
          `lab ${o.prefix} is up`,
          table([
            ['client', `${s.client} (${s.clientAddress})`],
            ['lb', `${s.lb.ns} ${s.lb.address} on ${s.lb.interface}`],
            ...s.backends.map((b) => [`backend ${b.name}`, `${b.namespace} ${b.address} (${b.segment})`]),
          ]),
          '',
          views.length ? formatServices(views) : '(no daemon)',
          '',
          'try:',
          // -g: curl would read an IPv6 VIP's brackets as a glob.
          ...s.services.map((x) => `  ip netns exec ${s.client} curl -g http://${hostPort(x.vip, x.port)}/    # ${x.mode}`),
          ...(d ? [`  lbctl --socket ${d.socket} list --stats`] : []),
          `  lbctl lab down${o.prefix === DEFAULT_PREFIX ? '' : ` --prefix ${o.prefix}`}`,
        ].join('\n');
        return { data: s, text };
      }),
    );
  lab
    .command('down')
    .description('stop the lab daemon (detaching XDP, removing pins), kill the servers, delete the namespaces')
    .option('--prefix <prefix>', 'namespace name prefix', DEFAULT_PREFIX)
    .option('--json', 'JSON for scripts')
    .action(
      act(async (o: { prefix: string }) => {
        await stopLabDaemon(stateDirOf(o.prefix), o.prefix);
        const r = await labDown(o.prefix);
        return { data: r, text: `lab ${o.prefix}: removed ${r.namespaces.length} namespaces, killed ${r.killed.length} processes` };
      }),
    );
  lab
    .command('status')
    .description('what of the lab exists and runs')
    .option('--prefix <prefix>', 'namespace name prefix', DEFAULT_PREFIX)
    .option('--json', 'JSON for scripts')
    .action(
      act(async (o: { prefix: string }) => {
        const st = await labStatus(o.prefix);
        const d = readLabDaemon(st.stateDir);
        let daemonUp = false;
        if (d) {
          try {
            await call(d.socket, 'GET', '/v1/status', undefined, 2000);
            daemonUp = true;
          } catch {
            daemonUp = false;
          }
        }
        const text = table([
          ['lab', st.up ? 'up' : st.namespaces.length ? 'partial (run lbctl lab down)' : 'down'],
          ['namespaces', st.namespaces.join(' ') || '(none)'],
          ['missing', st.missing.join(' ') || '(none)'],
          ['servers', st.servers.map((s) => `${s.name}:${s.running ? 'running' : 'stopped'}`).join(' ') || '(none)'],
          ['daemon', d ? `${daemonUp ? 'running' : 'not answering'} (pid ${d.pid}, socket ${d.socket})` : '(none)'],
        ]);
        return { data: { ...st, daemon: d ? { ...d, up: daemonUp } : null }, text, exitCode: st.up ? 0 : 1 };
      }),
    );
}
