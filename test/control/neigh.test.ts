// Neighbour resolution for l2dsr backends (src/control/neigh.ts), IPv4 and IPv6, for real: two
// namespaces made here (xh6-<random>-a/-b) joined by a veth pair. resolveMacs() runs inside `a`
// (dist/control/neigh.js under `ip netns exec`: build with `make build` first), where the tables
// start empty, so the answer can only come from the poke making the kernel ask (ARP / NDP).
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { exec, run, REPO_ROOT, waitVethsUp } from '../../src/lab/index.js';

const ID = randomBytes(3).toString('hex');
const A = `xh6-${ID}-a`;
const B = `xh6-${ID}-b`;
const NEIGH = join(REPO_ROOT, 'dist/control/neigh.js');

const skip = process.getuid?.() !== 0 ? 'needs root (network namespaces)' : undefined;

async function resolveIn(ns: string, addrs: string[]): Promise<Record<string, string>> {
  const script = `import { resolveMacs } from ${JSON.stringify(NEIGH)};
const m = await resolveMacs(${JSON.stringify(addrs)}, 2000);
process.stdout.write(JSON.stringify(Object.fromEntries(m)));`;
  const r = await exec(ns, ['node', '--input-type=module', '-e', script], { timeoutMs: 30_000 });
  return JSON.parse(r.stdout) as Record<string, string>;
}

t.test('an unknown neighbour is resolved by the poke: IPv4 by ARP, IPv6 by NDP; an absent one stays absent', { skip }, async (t) => {
  t.teardown(async () => {
    for (const ns of [A, B]) await run(['ip', 'netns', 'del', ns], { allowFail: true });
  });
  for (const ns of [A, B]) await run(['ip', 'netns', 'add', ns]);
  await run(['ip', '-n', A, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', B]);
  const macB = '02:00:00:66:00:02';
  await run(['ip', '-n', B, 'link', 'set', 'eth0', 'address', macB]);
  for (const [ns, n] of [[A, 1], [B, 2]] as const) {
    await run(['ip', '-n', ns, 'addr', 'add', `10.66.0.${n}/24`, 'dev', 'eth0']);
    await run(['ip', '-n', ns, 'addr', 'add', `fd66::${n}/64`, 'dev', 'eth0', 'nodad']);
    await run(['ip', '-n', ns, 'link', 'set', 'eth0', 'up']);
  }
  for (const ns of [A, B]) await waitVethsUp(ns);
  const before = await run(['ip', '-n', A, '-6', 'neigh', 'show', 'fd66::2']);
  t.equal(before.stdout.trim(), '', 'no IPv6 neighbour entry before');

  const m = await resolveIn(A, ['10.66.0.2', 'fd66::2', 'fd66::3']);
  t.equal(m['10.66.0.2'], macB, 'IPv4 neighbour resolved');
  t.equal(m['fd66::2'], macB, 'IPv6 neighbour resolved by NDP');
  t.notOk('fd66::3' in m, 'nobody answers for fd66::3: absent');
  const after = await run(['ip', '-n', A, '-j', '-6', 'neigh', 'show', 'fd66::2']);
  t.match(after.stdout, /"lladdr":"02:00:00:66:00:02"/, 'the kernel table has it too');
});
