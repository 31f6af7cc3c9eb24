import type { Command } from 'commander';
import type { ApplyReport } from '../../dataplane/apply.js';
import { enc } from '../../api/client.js';
import { LbError } from '../../errors.js';
import { act, api } from '../context.js';
import { summarize } from './apply.js';

interface BeOpts {
  weight?: string;
  port?: string;
  mac?: string;
}

function num(v: string | undefined, what: string): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) throw new LbError('ERR_LB_USAGE', `${what} "${v}" is not a whole number`);
  return Number(v);
}

function beFields(o: BeOpts): Record<string, unknown> {
  const weight = num(o.weight, '--weight');
  const port = num(o.port, '--port');
  return {
    ...(weight !== undefined ? { weight } : {}),
    ...(port !== undefined ? { port } : {}),
    ...(o.mac ? { mac: o.mac } : {}),
  };
}

export function registerBackend(program: Command): void {
  const be = program
    .command('backend')
    .description('add, change, drain or delete a backend (persisted to the daemon\'s config file)');
  const path = (svc: string, addr?: string) => `/v1/services/${enc(svc)}/backends${addr ? `/${enc(addr)}` : ''}`;
  be.command('add')
    .description('add a backend to a service')
    .argument('<service>', 'name or VIP:PORT/PROTO ([VIP]:PORT/PROTO for IPv6)')
    .argument('<address>', 'the backend\'s address, IPv4 or IPv6 (ipip: an IPv4 VIP may have IPv6 backends)')
    .option('-w, --weight <n>', 'weight, 0-65535 (0 = drain)')
    .option('--port <n>', 'nat only: the backend port')
    .option('--mac <mac>', 'l2dsr only: skip neighbour resolution')
    .option('--json', 'print the apply report as JSON')
    .addHelpText('after', '\nExamples:\n  lbctl backend add web 10.0.0.13 --weight 2\n  lbctl backend add \'[2001:db8::10]:443\' 2001:db8::13')
    .action(
      act(async (svc: string, address: string, o: BeOpts, cmd: Command) => {
        const { report } = await api(cmd)<{ report: ApplyReport }>('POST', path(svc), { backend: { address, ...beFields(o) } });
        return { data: report, text: `backend added: ${summarize(report)}` };
      }),
    );
  be.command('set')
    .description('change a backend (weight 0 drains it)')
    .argument('<service>', 'name or VIP:PORT/PROTO ([VIP]:PORT/PROTO for IPv6)')
    .argument('<address>', 'the backend\'s address; ADDRESS:PORT ([ADDRESS]:PORT for IPv6) when a nat service has it on several ports')
    .option('-w, --weight <n>', 'weight, 0-65535 (0 = drain)')
    .option('--port <n>', 'nat only: the backend port')
    .option('--mac <mac>', 'l2dsr only')
    .option('--json', 'print the apply report as JSON')
    .addHelpText('after', '\nExample:\n  lbctl backend set web 10.0.0.13 --weight 0')
    .action(
      act(async (svc: string, address: string, o: BeOpts, cmd: Command) => {
        const patch = beFields(o);
        if (!Object.keys(patch).length) throw new LbError('ERR_LB_USAGE', 'nothing to change', { hint: 'e.g. --weight 0' });
        const { report } = await api(cmd)<{ report: ApplyReport }>('PATCH', path(svc, address), { patch });
        return { data: report, text: `backend changed: ${summarize(report)}` };
      }),
    );
  be.command('del')
    .alias('delete')
    .description('delete a backend (its flows re-hash to the others; drain first to be gentle)')
    .argument('<service>', 'name or VIP:PORT/PROTO ([VIP]:PORT/PROTO for IPv6)')
    .argument('<address>', 'the backend\'s address; ADDRESS:PORT ([ADDRESS]:PORT for IPv6) when a nat service has it on several ports')
    .option('--json', 'print the apply report as JSON')
    .action(
      act(async (svc: string, address: string, _o: object, cmd: Command) => {
        const { report } = await api(cmd)<{ report: ApplyReport }>('DELETE', path(svc, address));
        return { data: report, text: `backend deleted: ${summarize(report)}` };
      }),
    );
  be.command('drain')
    .description('weight 0: no new flows; established flows continue. --wait follows them down')
    .argument('<service>', 'name or VIP:PORT/PROTO ([VIP]:PORT/PROTO for IPv6)')
    .argument('<address>', 'the backend\'s address; ADDRESS:PORT ([ADDRESS]:PORT for IPv6) when a nat service has it on several ports')
    .option('--wait', 'report the remaining active flows until none is left')
    .option('--timeout <seconds>', 'with --wait: give up after this long (exit 1)', '300')
    .option('--json', 'JSON for scripts')
    .addHelpText(
      'after',
      '\nA flow counts as active while the LB saw a packet of it in the last 30 s (DSR never sees\nthe server side, so idleness is how a flow ends for the LB).\n\nExample:\n  lbctl backend drain web 10.0.0.13 --wait --timeout 600',
    )
    .action(
      act(async (svc: string, address: string, o: { wait?: boolean; timeout: string; json?: boolean }, cmd: Command) => {
        const call = api(cmd);
        const timeout = Number(o.timeout);
        if (!(timeout > 0 && timeout <= 86400)) throw new LbError('ERR_LB_USAGE', `--timeout ${o.timeout}: want 1 to 86400 seconds`);
        await call('PATCH', path(svc, address), { patch: { weight: 0 } });
        const flows = () => call<{ active: number; total: number }>('GET', `${path(svc, address)}/flows`);
        let f = await flows();
        if (!o.wait) return { data: { drained: false, active: f.active }, text: `draining ${address}: ${f.active} active flows` };
        const deadline = Date.now() + timeout * 1000;
        let last = -1;
        while (f.active > 0 && Date.now() < deadline) {
          if (f.active !== last && !o.json) process.stderr.write(`draining ${address}: ${f.active} active flows\n`);
          last = f.active;
          await new Promise((r) => setTimeout(r, 1000));
          f = await flows();
        }
        if (f.active > 0) {
          return { data: { drained: false, active: f.active }, text: `drain of ${address} timed out with ${f.active} active flows`, exitCode: 1 };
        }
        return { data: { drained: true, active: 0 }, text: `${address} drained: no active flows` };
      }),
    );
}
