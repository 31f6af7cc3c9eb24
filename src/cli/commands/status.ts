import type { Command } from 'commander';
import type { StatusView } from '../../daemon/daemon.js';
import { VERSION } from '../../version.js';
import { act, api } from '../context.js';
import { table } from '../output.js';

export function registerStatus(program: Command): void {
  program
    .command('status')
    .description('is the daemon running, what is attached where, and what the last apply wrote')
    .option('--json', 'JSON for scripts')
    .action(
      act(async (_opts: object, cmd: Command) => {
        const s = await api(cmd)<StatusView>('GET', '/v1/status');
        const w = s.lastApply?.writes;
        const rows = [
          ['daemon', `running, pid ${s.pid}, version ${s.version}, up ${s.uptimeSec} s`],
          ['config', s.config],
          ['pins', s.bpffs],
          ...s.interfaces.map((i) => [`xdp ${i.name}`, i.attached ? `attached (${i.mode}, prog ${i.progId})` : `NOT attached (prog ${i.progId || 'none'})`]),
          ['services', `${s.services} (${s.backends} backends)`],
          ['adopted', `${s.adopted.services} services, ${s.adopted.backends} backends from the pins at start`],
          ...(s.serverPrep
            ? [['server prep', `${s.serverPrep.running ? 'running' : `${s.serverPrep.hosts.filter((h) => h.ok).length}/${s.serverPrep.hosts.length} hosts ok`} (${s.serverPrep.reason}, ${s.serverPrep.at})`]]
            : []),
          ['last apply', s.lastApply ? `${s.lastApply.at} (${s.lastApply.reason}): ${w ? Object.values(w).reduce((a, b) => a + b, 0) : 0} writes` : 'never'],
        ];
        return { data: s, text: table(rows) };
      }),
    );
  program
    .command('version')
    .description('print lbctl\'s version')
    .option('--json', 'JSON for scripts')
    .action(act(async () => ({ data: { version: VERSION }, text: `lbctl ${VERSION}` })));
}
