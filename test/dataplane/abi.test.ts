/**
 * The TypeScript codecs against the BTF of the built object: a change to bpf/lb_abi.h that is not
 * mirrored in src/dataplane/abi.ts fails here (Cilium's alignchecker idea).
 */
import t from 'tap';
import { Btf } from '../../src/bpf/index.js';
import { ALL_CODECS } from '../../src/dataplane/abi.js';
import { bpfObjectPath } from '../../src/dataplane/loader.js';

const btf = Btf.fromObjectFile(bpfObjectPath('balancer'));
t.teardown(() => btf.close());

for (const codec of ALL_CODECS) {
  t.test(`struct ${codec.cName}`, async (t) => {
    const layout = btf.structLayout(codec.cName);
    t.equal(codec.size, layout.size, 'size matches the C struct');
    t.same(
      codec.fields.map((f) => ({ name: f.name, offset: f.offset, size: f.size })),
      layout.members.map((m) => ({ name: m.name, offset: m.offset, size: m.size })),
      'fields, offsets and sizes match the C struct',
    );
    t.equal(codec.encode(codec.decode(Buffer.alloc(codec.size))).length, codec.size, 'encodes to the C size');
  });
}

t.test('the mode and flag constants match the header', async (t) => {
  const modes = btf.enumValues('lb_mode');
  t.same(modes, { LB_MODE_L2DSR: 1, LB_MODE_IPIP: 2, LB_MODE_NAT: 3 });
});

t.test('the NAT state constants match the header', async (t) => {
  const { NAT_STATE } = await import('../../src/dataplane/abi.js');
  t.same(btf.enumValues('lb_nat_state'), {
    LB_NAT_TCP_NEW: NAT_STATE.tcpNew,
    LB_NAT_TCP_EST: NAT_STATE.tcpEstablished,
    LB_NAT_TCP_CLOSING: NAT_STATE.tcpClosing,
    LB_NAT_UDP: NAT_STATE.udp,
  });
});
