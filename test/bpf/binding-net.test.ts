/**
 * XDP attach/detach/query on veth pairs inside network namespaces this test creates
 * (xbind-<random>), and one real packet path. Every namespace is deleted in teardown, which
 * also removes its veths and their XDP programs.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readlinkSync } from 'node:fs';
import { LbError } from '../../src/errors.js';
import {
  BpfObject,
  BpfProgram,
  attachXdp,
  detachXdp,
  ifIndex,
  inNetns,
  queryXdp,
  setLibbpfLogger,
} from '../../src/bpf/index.js';
import { compileFixture, projectObject } from './fixtures/build.js';

const dir = t.testdir();
const XDP_PASS = projectObject('xdp_pass');
const FIXTURE = compileFixture('binding_fixture', dir);

const ip = (...args: string[]): string => execFileSync('ip', args, { encoding: 'utf8', timeout: 10_000 });

function netns(tt: { teardown: (fn: () => void) => void }, suffix = ''): string {
  const ns = `xbind-${randomBytes(3).toString('hex')}${suffix}`;
  ip('netns', 'add', ns);
  tt.teardown(() => {
    try {
      ip('netns', 'del', ns);
    } catch {
      // already gone
    }
  });
  return ns;
}

/** The XDP program id `ip` sees on a link, as an independent check of queryXdp. */
function ipXdpId(ns: string, link: string): number | undefined {
  const info = JSON.parse(ip('-n', ns, '-d', '-j', 'link', 'show', link)) as { xdp?: { prog?: { id: number } } }[];
  return info[0]?.xdp?.prog?.id;
}

function lbErr(fn: () => unknown): LbError {
  try {
    fn();
  } catch (e) {
    if (e instanceof LbError) return e;
    throw e;
  }
  throw new Error('expected an LbError, nothing was thrown');
}

const myNetns = () => readlinkSync('/proc/thread-self/ns/net');

t.test('inNetns enters and leaves a namespace', async (t) => {
  const ns = netns(t);
  const home = myNetns();
  const inside = inNetns(ns, () => myNetns());
  t.not(inside, home);
  t.equal(myNetns(), home, 'back home');
  t.throws(() => inNetns(ns, () => { throw new Error('boom'); }), /boom/);
  t.equal(myNetns(), home, 'back home after a throw');
  t.throws(() => inNetns(ns, () => Promise.resolve(1)), { code: 'ERR_LB_USAGE' });
  t.equal(myNetns(), home);
  t.throws(() => inNetns('xbind-does-not-exist', () => 1), { code: 'ERR_LB_NO_INTERFACE' });
  t.equal(inNetns(ns, () => ifIndex('lo')), 1);
});

t.test('attach, query, detach xdp_pass on a veth in a namespace', async (t) => {
  const ns = netns(t);
  ip('-n', ns, 'link', 'add', 'xb0', 'type', 'veth', 'peer', 'name', 'xb1');
  ip('-n', ns, 'link', 'set', 'xb0', 'up');
  ip('-n', ns, 'link', 'set', 'xb1', 'up');

  const obj = BpfObject.open(XDP_PASS);
  t.teardown(() => obj.close());
  obj.load();
  const prog = obj.program('xdp_pass');
  const floor = BpfObject.open(projectObject('floor'));
  t.teardown(() => floor.close());
  floor.load();

  t.throws(() => queryXdp('xb0'), { code: 'ERR_LB_NO_INTERFACE' }, 'not visible outside its namespace');

  inNetns(ns, () => {
    t.match(queryXdp('xb0'), { progId: 0, attachMode: 'none' });
    attachXdp('xb0', prog.fd, { mode: 'native' });
    t.match(queryXdp('xb0'), { progId: prog.id, drvProgId: prog.id, skbProgId: 0, attachMode: 'native' });

    const busy = lbErr(() => attachXdp('xb0', floor.program('xdp_floor'), { mode: 'native' }));
    t.equal(busy.code, 'ERR_LB_BPF_ATTACH');
    t.equal(busy.errno, 'EBUSY');
    t.match(busy.hint, /another XDP program/);
    t.equal(queryXdp('xb0').progId, prog.id, 'a refused attach leaves the old program');

    attachXdp('xb0', floor.program('xdp_floor'), { mode: 'native', replace: true });
    t.equal(queryXdp('xb0').progId, floor.program('xdp_floor').id, 'replace swaps the program');
  });
  t.equal(ipXdpId(ns, 'xb0'), floor.program('xdp_floor').id, 'ip link agrees');

  inNetns(ns, () => {
    detachXdp('xb0', 'native');
    t.match(queryXdp('xb0'), { progId: 0, attachMode: 'none' });
    detachXdp('xb0', 'native'); // nothing attached: not an error

    attachXdp('xb1', prog, { mode: 'generic' });
    t.match(queryXdp('xb1'), { progId: prog.id, skbProgId: prog.id, drvProgId: 0, attachMode: 'generic' });
    const mixed = lbErr(() => attachXdp('xb1', prog, { mode: 'native', replace: true }));
    t.equal(mixed.code, 'ERR_LB_BPF_ATTACH', 'native and generic cannot coexist');
    detachXdp('xb1', 'generic');
    t.equal(queryXdp('xb1').progId, 0);
  });
  t.equal(ipXdpId(ns, 'xb0'), undefined);
});

t.test('a program opened from its pin can be attached after its object is gone', async (t) => {
  const ns = netns(t);
  ip('-n', ns, 'link', 'add', 'xb0', 'type', 'veth', 'peer', 'name', 'xb1');
  const pins = `/sys/fs/bpf/xbind-${randomBytes(4).toString('hex')}`;
  t.teardown(() => execFileSync('rm', ['-rf', pins]));
  const obj = BpfObject.open(XDP_PASS);
  obj.load();
  const id = obj.program('xdp_pass').id;
  obj.pinProgram('xdp_pass', `${pins}/xdp_pass`);
  obj.close();
  const prog = BpfProgram.openPinned(`${pins}/xdp_pass`);
  t.teardown(() => prog.close());
  t.equal(prog.id, id);
  inNetns(ns, () => attachXdp('xb0', prog));
  t.equal(ipXdpId(ns, 'xb0'), id);
});

t.test('ping across a veth pair with XDP on both ends', async (t) => {
  const a = netns(t, 'a');
  const b = netns(t, 'b');
  ip('link', 'add', 'xa', 'netns', a, 'type', 'veth', 'peer', 'name', 'xb', 'netns', b);
  ip('-n', a, 'addr', 'add', '10.201.77.1/24', 'dev', 'xa');
  ip('-n', b, 'addr', 'add', '10.201.77.2/24', 'dev', 'xb');
  ip('-n', a, 'link', 'set', 'xa', 'up');
  ip('-n', b, 'link', 'set', 'xb', 'up');

  const pass = BpfObject.open(XDP_PASS);
  t.teardown(() => pass.close());
  pass.load();
  // The receiving end runs the fixture: it counts every frame in a per-CPU array and passes it.
  const counter = BpfObject.open(FIXTURE);
  t.teardown(() => counter.close());
  counter.load();
  const hits = counter.map('hits');
  const zero = Buffer.alloc(4);
  const total = () => (hits.lookupPerCpu(zero) ?? []).reduce((s, v) => s + v.readUInt32LE(0), 0);

  inNetns(a, () => attachXdp('xa', pass.program('xdp_pass'), { mode: 'native' }));
  inNetns(b, () => attachXdp('xb', counter.program('xdp_fixture'), { mode: 'native' }));
  // Frames may already be arriving (IPv6 router solicitations after link-up): count from here.
  const before = total();

  const out = execFileSync('ip', ['netns', 'exec', a, 'ping', '-c', '3', '-W', '1', '-i', '0.2', '10.201.77.2'], {
    encoding: 'utf8',
    timeout: 20_000,
  });
  t.match(out, /3 received/, 'every ping answered');
  t.ok(total() - before >= 3, `the XDP program on xb saw the packets (${total() - before} frames)`);
});

t.test('libbpf messages reach a logger', async (t) => {
  const got: string[] = [];
  setLibbpfLogger((level, msg) => got.push(`${level}: ${msg}`));
  t.teardown(() => setLibbpfLogger(undefined));
  t.throws(() => BpfObject.open(`${dir}/missing.bpf.o`), { code: 'ERR_LB_BPF_OPEN' });
  t.match(got.join('\n'), /warn: .*missing\.bpf\.o/);
});
