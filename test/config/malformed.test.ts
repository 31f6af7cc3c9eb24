import t from 'tap';
import { stringify } from 'yaml';
import { ConfigError, parseConfig } from '../../src/config/index.js';
import { isLbError } from '../../src/errors.js';

type Obj = Record<string, any>;

/** A valid config; each case breaks one thing in a fresh copy. */
function base(): Obj {
  return {
    node: { interfaces: ['eth0'] },
    services: [
      {
        name: 'web',
        vip: '10.0.0.10',
        port: 80,
        mode: 'l2dsr',
        backends: [{ address: '10.0.0.11' }, { address: '10.0.0.12' }],
      },
    ],
  };
}
const mut = (fn: (c: Obj) => void): Obj => {
  const c = base();
  fn(c);
  return c;
};
const svc = (fn: (s: Obj, c: Obj) => void): Obj => mut((c) => fn(c['services'][0], c));
const hc = (check: Obj, mode = 'l2dsr'): Obj =>
  svc((s) => {
    s['healthCheck'] = check;
    s['mode'] = mode;
  });

interface Case {
  name: string;
  /** an object is written out as YAML; a string is the file's text as is */
  input: Obj | string;
  source?: string;
  /** the violation's path as printed (or `line L, column C` for syntax errors) */
  path: string;
  msg: RegExp;
}

const cases: Case[] = [
  // ---- the file itself ----
  { name: 'empty file', input: '', path: '(top level)', msg: /^the file is empty \(hint: .*node\.interfaces/ },
  { name: 'only comments', input: '# nothing yet\n\n', path: '(top level)', msg: /^the file is empty/ },
  {
    name: 'YAML syntax error has line and column',
    input: 'node:\n  interfaces: [eth0\nservices: []\n',
    path: 'line 3, column 1',
    msg: /^YAML syntax error: .*end with a \]/,
  },
  {
    name: 'YAML duplicate key',
    input: 'node:\n  interfaces: [eth0]\n  seed: 1\n  seed: 2\n',
    path: 'line 4, column 3',
    msg: /^YAML syntax error: Map keys must be unique/,
  },
  {
    name: 'two YAML documents',
    input: 'node:\n  interfaces: [eth0]\n---\nservices: []\n',
    path: 'line 3, column 1',
    msg: /multiple documents/,
  },
  {
    name: 'JSON syntax error (.json file)',
    input: '{\n  "node": {"interfaces": ["eth0"],}\n}\n',
    source: 'config.json',
    path: 'line 2, column 35',
    msg: /^JSON syntax error: /,
  },
  { name: 'JSON by content', input: '{"node": {"interfaces": ["eth0"]} "services": []}', path: 'line 1, column 35', msg: /^JSON syntax error/ },
  {
    name: 'JSON duplicate key',
    input: '{"node": {"interfaces": ["eth0"]}, "node": {"interfaces": ["eth1"]}}',
    path: 'line 1, column 36',
    msg: /same key twice/,
  },
  { name: 'top level is a list', input: '- node\n- services\n', path: '(top level)', msg: /^the top level must be a mapping .*got a list/ },
  { name: 'top level is a scalar', input: 'hello\n', path: '(top level)', msg: /must be a mapping .*got "hello"/ },
  { name: 'unknown top-level key', input: mut((c) => (c['service'] = [])), path: 'service', msg: /^unknown key "service" \(did you mean "services"\?\)$/ },
  { name: 'services not a list', input: mut((c) => (c['services'] = { web: {} })), path: 'services', msg: /^expected a list, got a mapping/ },

  // ---- node ----
  { name: 'node missing', input: mut((c) => delete c['node']), path: 'node', msg: /^missing \(required/ },
  { name: 'interfaces missing', input: mut((c) => (c['node'] = { seed: 1 })), path: 'node.interfaces', msg: /^missing \(required/ },
  { name: 'interfaces not a list', input: mut((c) => (c['node'].interfaces = 'eth0')), path: 'node.interfaces', msg: /^expected a list, got "eth0"$/ },
  { name: 'interfaces empty', input: mut((c) => (c['node'].interfaces = [])), path: 'node.interfaces', msg: /^needs at least 1 entry$/ },
  {
    name: '17 interfaces',
    input: mut((c) => (c['node'].interfaces = Array.from({ length: 17 }, (_, i) => `eth${i}`))),
    path: 'node.interfaces',
    msg: /^takes at most 16 entries \(got 17\)$/,
  },
  { name: 'interface name too long', input: mut((c) => (c['node'].interfaces = ['enp0s31f6-uplink0'])), path: 'node.interfaces[0]', msg: /longer than 15 bytes/ },
  { name: 'interface name with a slash', input: mut((c) => (c['node'].interfaces = ['eth0', 'eth/1'])), path: 'node.interfaces[1]', msg: /no '\/'/ },
  { name: 'interface name with a space', input: mut((c) => (c['node'].interfaces = ['eth 0'])), path: 'node.interfaces[0]', msg: /whitespace/ },
  { name: 'interface listed twice', input: mut((c) => (c['node'].interfaces = ['eth0', 'eth1', 'eth0'])), path: 'node.interfaces[2]', msg: /"eth0" is listed twice/ },
  { name: 'unknown node key', input: mut((c) => (c['node'].interface = ['eth1'])), path: 'node.interface', msg: /^unknown key "interface" \(did you mean "interfaces"\?\)$/ },
  {
    name: 'services indented under node',
    input: mut((c) => (c['node'].services = [])),
    path: 'node.services',
    msg: /^unknown key "services" \(hint: "services" is a key of the top level; check the indentation\)$/,
  },
  { name: 'xdpMode', input: mut((c) => (c['node'].xdpMode = 'fast')), path: 'node.xdpMode', msg: /^"fast" is not one of native, generic$/ },
  { name: 'bpffs relative', input: mut((c) => (c['node'].bpffs = 'sys/fs/bpf/xdplb')), path: 'node.bpffs', msg: /is not an absolute path/ },
  { name: 'bpffs is the root', input: mut((c) => (c['node'].bpffs = '/')), path: 'node.bpffs', msg: /is the root directory/ },
  { name: 'ringSize not prime', input: mut((c) => (c['node'].ringSize = 65536)), path: 'node.ringSize', msg: /^65536 is not a prime \(hint: .*65521 and 65537\)$/ },
  { name: 'ringSize too small', input: mut((c) => (c['node'].ringSize = 251)), path: 'node.ringSize', msg: /^must be at least 257, got 251$/ },
  { name: 'ringSize too large', input: mut((c) => (c['node'].ringSize = 2097143)), path: 'node.ringSize', msg: /^must be at most 1048573/ },
  { name: 'maxServices too large', input: mut((c) => (c['node'].maxServices = 5000)), path: 'node.maxServices', msg: /^must be at most 4096, got 5000$/ },
  {
    name: 'flowBuckets not a power of two',
    input: mut((c) => (c['node'].flowBuckets = 1000000)),
    path: 'node.flowBuckets',
    msg: /^1000000 is not a power of two \(hint: .*524288 or 1048576\)$/,
  },
  { name: 'flowBuckets too small', input: mut((c) => (c['node'].flowBuckets = 512)), path: 'node.flowBuckets', msg: /^must be at least 1024, got 512$/ },
  { name: 'seed beyond u32', input: mut((c) => (c['node'].seed = 2 ** 32)), path: 'node.seed', msg: /^must be at most 4294967295, got 4294967296$/ },
  { name: 'flowIdleTimeout under a tick', input: mut((c) => (c['node'].flowIdleTimeout = '500ms')), path: 'node.flowIdleTimeout', msg: /^must be between 1s and 1h, got 500 ms/ },
  { name: 'flowIdleTimeout without a unit', input: mut((c) => (c['node'].flowIdleTimeout = 30)), path: 'node.flowIdleTimeout', msg: /unit|duration/ },
  { name: 'seed negative', input: mut((c) => (c['node'].seed = -1)), path: 'node.seed', msg: /^must be at least 0, got -1$/ },
  {
    name: 'sourceAddress.ipv4 is IPv6',
    input: mut((c) => (c['node'].sourceAddress = { ipv4: '2001:db8::1' })),
    path: 'node.sourceAddress.ipv4',
    msg: /^"2001:db8::1" is an IPv6 address, not IPv4$/,
  },
  {
    name: 'sourceAddress.ipv6 is link-local',
    input: mut((c) => (c['node'].sourceAddress = { ipv6: 'fe80::1' })),
    path: 'node.sourceAddress.ipv6',
    msg: /^"fe80::1" is a link-local address/,
  },
  {
    name: 'nat.sources: five IPv6',
    input: mut((c) => (c['node'].nat = { sources: ['10.0.0.1', '2001:db8::1', '2001:db8::2', '2001:db8::3', '2001:db8::4', '2001:db8::5'] })),
    path: 'node.nat.sources',
    msg: /^5 IPv6 addresses, at most 4 per family \(hint: the data path has 4 source slots per family\)$/,
  },
  {
    name: 'nat.sources: five IPv4',
    input: mut((c) => (c['node'].nat = { sources: ['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.4', '10.0.0.5'] })),
    path: 'node.nat.sources',
    msg: /^5 IPv4 addresses, at most 4 per family/,
  },
  {
    name: 'nat.sources: one address twice',
    input: mut((c) => (c['node'].nat = { sources: ['2001:db8::1', '10.0.0.1', '2001:DB8::1'] })),
    path: 'node.nat.sources[2]',
    msg: /^2001:db8::1 is already sources\[0\]$/,
  },
  {
    name: 'nat.sources: link-local',
    input: mut((c) => (c['node'].nat = { sources: ['fe80::1'] })),
    path: 'node.nat.sources[0]',
    msg: /^"fe80::1" is a link-local address/,
  },
  {
    name: 'nat.sources: empty',
    input: mut((c) => (c['node'].nat = { sources: [] })),
    path: 'node.nat.sources',
    msg: /at least 1/,
  },
  {
    name: 'nat.entries6 too small',
    input: mut((c) => (c['node'].nat = { entries6: 100 })),
    path: 'node.nat.entries6',
    msg: /^must be at least 1024, got 100$/,
  },
  {
    name: 'sourceAddress.ipv6 is IPv4',
    input: mut((c) => (c['node'].sourceAddress = { ipv6: '10.0.0.1' })),
    path: 'node.sourceAddress.ipv6',
    msg: /^"10.0.0.1" is an IPv4 address, not IPv6$/,
  },
  {
    name: 'metrics.listen is a host name',
    input: mut((c) => (c['node'].metrics = { listen: 'localhost' })),
    path: 'node.metrics.listen',
    msg: /^"localhost" is not an IP address \(hint: listen takes an IP address/,
  },
  { name: 'metrics.port 0', input: mut((c) => (c['node'].metrics = { port: 0 })), path: 'node.metrics.port', msg: /^must be at least 1, got 0$/ },
  { name: 'log level', input: mut((c) => (c['node'].log = { level: 'verbose' })), path: 'node.log.level', msg: /^"verbose" is not one of trace, debug, info, warn, error, fatal$/ },
  {
    name: 'api socket path too long for sun_path',
    input: mut((c) => (c['node'].api = { socket: `/run/${'x'.repeat(110)}.sock` })),
    path: 'node.api.socket',
    msg: /longer than 107 bytes/,
  },

  // ---- services ----
  { name: 'unknown service key', input: svc((s) => (s['backend'] = [])), path: 'services[0].backend', msg: /^unknown key "backend" \(did you mean "backends"\?\)$/ },
  {
    name: 'health key at service level',
    input: svc((s) => (s['interval'] = '2s')),
    path: 'services[0].interval',
    msg: /^unknown key "interval" \(hint: "interval" is a key of healthCheck; check the indentation\)$/,
  },
  { name: 'vip not an address', input: svc((s) => (s['vip'] = '10.0.0.300')), path: 'services[0].vip', msg: /^"10.0.0.300" is not an IP address$/ },
  { name: 'vip bad IPv6', input: svc((s) => (s['vip'] = '2001:db8:::10')), path: 'services[0].vip', msg: /^"2001:db8:::10" is not an IP address$/ },
  { name: 'vip a number', input: svc((s) => (s['vip'] = 10)), path: 'services[0].vip', msg: /^expected a string, got 10$/ },
  { name: 'vip missing', input: svc((s) => delete s['vip']), path: 'services[0].vip', msg: /^missing \(required: a string\)$/ },
  { name: 'loopback vip', input: svc((s) => (s['vip'] = '127.0.0.1')), path: 'services[0].vip', msg: /^"127.0.0.1" is a loopback address$/ },
  { name: 'unspecified vip', input: svc((s) => (s['vip'] = '0.0.0.0')), path: 'services[0].vip', msg: /unspecified address/ },
  { name: 'multicast IPv6 vip', input: svc((s) => (s['vip'] = 'ff02::1')), path: 'services[0].vip', msg: /^"ff02::1" is a multicast address$/ },
  { name: 'link-local vip', input: svc((s) => (s['vip'] = 'FE80::10')), path: 'services[0].vip', msg: /^"FE80::10" is a link-local address \(hint: /},
  { name: 'link-local vip, upper end of fe80::/10', input: svc((s) => (s['vip'] = 'febf::1')), path: 'services[0].vip', msg: /^"febf::1" is a link-local address/ },
  { name: 'unspecified IPv6 vip', input: svc((s) => (s['vip'] = '::')), path: 'services[0].vip', msg: /^"::" is an unspecified address$/ },
  { name: 'IPv6 loopback vip', input: svc((s) => (s['vip'] = '::1')), path: 'services[0].vip', msg: /^"::1" is a loopback address$/ },
  { name: 'IPv4-mapped vip', input: svc((s) => (s['vip'] = '::ffff:10.0.0.10')), path: 'services[0].vip', msg: /IPv4-mapped .*hint: write the IPv4 address/ },
  { name: 'vip with a zone index', input: svc((s) => (s['vip'] = 'fe80::1%eth0')), path: 'services[0].vip', msg: /has a zone index/ },
  { name: 'port 0', input: svc((s) => (s['port'] = 0)), path: 'services[0].port', msg: /^must be at least 1, got 0$/ },
  { name: 'port 65536', input: svc((s) => (s['port'] = 65536)), path: 'services[0].port', msg: /^must be at most 65535, got 65536$/ },
  { name: 'port as a string', input: svc((s) => (s['port'] = '80')), path: 'services[0].port', msg: /^expected a number, got "80"$/ },
  { name: 'proto', input: svc((s) => (s['proto'] = 'sctp')), path: 'services[0].proto', msg: /^"sctp" is not one of tcp, udp( |$)/ },
  { name: 'mode unknown', input: svc((s) => (s['mode'] = 'l2-dsr')), path: 'services[0].mode', msg: /^"l2-dsr" is not one of l2dsr, ipip, nat \(did you mean "l2dsr"\?\)$/ },
  { name: 'mode missing', input: svc((s) => delete s['mode']), path: 'services[0].mode', msg: /^missing \(required: one of l2dsr, ipip, nat\)$/ },
  { name: 'boolean as a word', input: svc((s) => (s['hashSourceOnly'] = 'yes')), path: 'services[0].hashSourceOnly', msg: /^expected true or false, got "yes" \(hint: / },
  { name: 'onAllDown', input: svc((s) => (s['onAllDown'] = 'reject')), path: 'services[0].onAllDown', msg: /^"reject" is not one of drop, pass$/ },
  { name: 'bad name', input: svc((s) => (s['name'] = 'my web')), path: 'services[0].name', msg: /^"my web" is not a service name/ },
  {
    name: 'duplicate service',
    input: mut((c) => c['services'].push({ name: 'web2', vip: '10.0.0.10', port: 80, mode: 'ipip' })),
    path: 'services[1]',
    msg: /^10\.0\.0\.10:80\/tcp is already services\[0\]/,
  },
  {
    name: 'duplicate service, IPv6 spelt two ways',
    input: mut((c) => {
      c['services'] = [
        { vip: '2001:db8::10', port: 80, mode: 'l2dsr' },
        { vip: '2001:DB8:0:0::10', port: 80, mode: 'l2dsr' },
      ];
    }),
    path: 'services[1]',
    msg: /^\[2001:db8::10\]:80\/tcp is already services\[0\]/,
  },
  {
    name: 'duplicate name',
    input: mut((c) => c['services'].push({ name: 'web', vip: '10.0.0.20', port: 80, mode: 'l2dsr' })),
    path: 'services[1].name',
    msg: /^"web" is already the name of services\[0\]$/,
  },
  {
    name: 'more services than maxServices',
    input: mut((c) => {
      c['node'].maxServices = 1;
      c['services'].push({ vip: '10.0.0.20', port: 80, mode: 'l2dsr' });
    }),
    path: 'services',
    msg: /^2 services, more than node\.maxServices \(1\) \(hint: raise node\.maxServices/,
  },
  // ---- backends ----
  { name: 'unknown backend key', input: svc((s) => (s['backends'][0].adress = '10.0.0.13')), path: 'services[0].backends[0].adress', msg: /^unknown key "adress" \(did you mean "address"\?\)$/ },
  { name: 'backend address not an IP', input: svc((s) => (s['backends'][1].address = '10.0.0.300')), path: 'services[0].backends[1].address', msg: /^"10.0.0.300" is not an IP address$/ },
  { name: 'backend bad IPv6', input: svc((s) => (s['backends'][0].address = '2001:db8::g')), path: 'services[0].backends[0].address', msg: /^"2001:db8::g" is not an IP address$/ },
  { name: 'multicast backend', input: svc((s) => (s['backends'][0].address = '224.0.0.5')), path: 'services[0].backends[0].address', msg: /multicast address/ },
  { name: 'broadcast backend', input: svc((s) => (s['backends'][0].address = '255.255.255.255')), path: 'services[0].backends[0].address', msg: /broadcast address/ },
  {
    name: 'IPv6 loopback backend',
    input: svc((s) => {
      s['vip'] = '2001:db8::10';
      s['backends'] = [{ address: '::1' }];
    }),
    path: 'services[0].backends[0].address',
    msg: /^"::1" is a loopback address$/,
  },
  { name: 'backend is the VIP', input: svc((s) => (s['backends'][1].address = '10.0.0.10')), path: 'services[0].backends[1].address', msg: /^10\.0\.0\.10 is the service's VIP/ },
  { name: 'duplicate backend', input: svc((s) => (s['backends'][1].address = '10.0.0.11')), path: 'services[0].backends[1].address', msg: /^10\.0\.0\.11 is already backends\[0\]$/ },
  {
    name: 'duplicate nat backend (same port, one defaulted)',
    input: svc((s) => {
      s['mode'] = 'nat';
      s['backends'] = [{ address: '10.0.0.11' }, { address: '10.0.0.11', port: 80 }];
    }),
    path: 'services[0].backends[1].address',
    msg: /^10\.0\.0\.11 port 80 is already backends\[0\]$/,
  },
  { name: 'weight above 65535', input: svc((s) => (s['backends'][0].weight = 70000)), path: 'services[0].backends[0].weight', msg: /^must be at most 65535, got 70000$/ },
  { name: 'weight negative', input: svc((s) => (s['backends'][0].weight = -1)), path: 'services[0].backends[0].weight', msg: /^must be at least 0, got -1$/ },
  { name: 'weight not an integer', input: svc((s) => (s['backends'][0].weight = 1.5)), path: 'services[0].backends[0].weight', msg: /^expected an integer, got 1.5$/ },
  { name: 'port on a DSR backend', input: svc((s) => (s['backends'][0].port = 8080)), path: 'services[0].backends[0].port', msg: /^mode l2dsr cannot translate ports/ },
  {
    name: 'mac on an ipip backend',
    input: svc((s) => {
      s['mode'] = 'ipip';
      s['backends'][0].mac = '02:00:00:00:00:11';
    }),
    path: 'services[0].backends[0].mac',
    msg: /^mac is only for l2dsr backends, not ipip/,
  },
  { name: 'mac syntax', input: svc((s) => (s['backends'][0].mac = '02:00:00:00:11')), path: 'services[0].backends[0].mac', msg: /^"02:00:00:00:11" is not a MAC address/ },
  { name: 'multicast mac', input: svc((s) => (s['backends'][0].mac = '01:00:5e:00:00:01')), path: 'services[0].backends[0].mac', msg: /multicast MAC/ },
  {
    name: 'l2dsr family mismatch',
    input: svc((s) => (s['backends'][0].address = '2001:db8::11')),
    path: 'services[0].backends[0].address',
    msg: /^2001:db8::11 is IPv6 but the VIP 10\.0\.0\.10 is IPv4/,
  },
  {
    name: 'ipip IPv4 backend behind an IPv6 VIP',
    input: svc((s) => {
      s['mode'] = 'ipip';
      s['vip'] = '2001:db8::10';
      s['backends'] = [{ address: '2001:db8::11' }, { address: '10.0.0.12' }];
    }),
    path: 'services[0].backends[1].address',
    msg: /^10\.0\.0\.12 is IPv4 but the VIP 2001:db8::10 is IPv6 \(hint: mode ipip sends an IPv6 VIP to IPv6 backends only \(an IPv4 VIP may go to either family\)\)$/,
  },
  {
    name: 'nat IPv4 backend behind an IPv6 VIP',
    input: svc((s) => {
      s['mode'] = 'nat';
      s['vip'] = '2001:db8::10';
      s['backends'] = [{ address: '10.0.0.11' }];
    }),
    path: 'services[0].backends[0].address',
    msg: /^10\.0\.0\.11 is IPv4 but the VIP 2001:db8::10 is IPv6 \(hint: mode nat keeps the VIP's address family\)$/,
  },
  {
    name: 'l2dsr IPv4 backend behind an IPv6 VIP',
    input: svc((s) => (s['vip'] = '2001:db8::10')),
    path: 'services[0].backends[0].address',
    msg: /^10\.0\.0\.11 is IPv4 but the VIP 2001:db8::10 is IPv6 \(hint: mode l2dsr keeps the VIP's address family\)$/,
  },
  {
    name: 'link-local IPv6 backend',
    input: svc((s) => {
      s['vip'] = '2001:db8::10';
      s['backends'] = [{ address: 'fe80::11' }];
    }),
    path: 'services[0].backends[0].address',
    msg: /^"fe80::11" is a link-local address \(hint: a VIP, backend or source needs a global \(or unique local, fc00::\/7\) IPv6 address\)$/,
  },
  {
    name: 'IPv4-mapped backend',
    input: svc((s) => (s['backends'][0].address = '::ffff:10.0.0.11')),
    path: 'services[0].backends[0].address',
    msg: /^"::ffff:10\.0\.0\.11" is an IPv4-mapped IPv6 address \(hint: write the IPv4 address itself\)$/,
  },
  {
    name: 'duplicate IPv6 backend, spelt two ways',
    input: svc((s) => {
      s['vip'] = '2001:db8::10';
      s['backends'] = [{ address: '2001:db8::11' }, { address: '2001:DB8:0:0::11' }];
    }),
    path: 'services[0].backends[1].address',
    msg: /^2001:db8::11 is already backends\[0\]$/,
  },

  // ---- health checks ----
  { name: 'unknown health key', input: hc({ intervall: '2s' }), path: 'services[0].healthCheck.intervall', msg: /^unknown key "intervall" \(did you mean "interval"\?\)$/ },
  { name: 'unknown defaults key', input: mut((c) => (c['defaults'] = { healthcheck: {} })), path: 'defaults.healthcheck', msg: /^unknown key "healthcheck" \(did you mean "healthCheck"\?\)$/ },
  { name: 'unknown key in a backend override', input: svc((s) => (s['backends'][0].healthCheck = { rize: 2 })), path: 'services[0].backends[0].healthCheck.rize', msg: /did you mean "rise"/ },
  { name: 'check type', input: hc({ type: 'icmp' }), path: 'services[0].healthCheck.type', msg: /^"icmp" is not one of none, tcp, http, https, udp, exec$/ },
  { name: 'duration without a unit', input: hc({ interval: 2 }), path: 'services[0].healthCheck.interval', msg: /^2 has no unit \(hint: .*"2s" or "2ms"\)$/ },
  { name: 'duration with an unknown unit', input: hc({ interval: '2h' }), path: 'services[0].healthCheck.interval', msg: /^"2h" is not a duration/ },
  { name: 'timeout equal to interval', input: hc({ interval: '2s', timeout: '2s' }), path: 'services[0].healthCheck.timeout', msg: /^timeout 2s must be shorter than interval 2s$/ },
  { name: 'interval below the default timeout', input: hc({ interval: '500ms' }), path: 'services[0].healthCheck.interval', msg: /^timeout 1s must be shorter than interval 500ms$/ },
  { name: 'rise 0', input: hc({ rise: 0 }), path: 'services[0].healthCheck.rise', msg: /^must be at least 1, got 0$/ },
  { name: 'fall 101', input: hc({ fall: 101 }), path: 'services[0].healthCheck.fall', msg: /^must be at most 100, got 101$/ },
  { name: 'jitter above 0.5', input: hc({ jitter: 0.9 }), path: 'services[0].healthCheck.jitter', msg: /^must be at most 0.5, got 0.9$/ },
  { name: 'expect range inverted', input: hc({ type: 'http', expect: [200, '399-300'] }), path: 'services[0].healthCheck.expect[1]', msg: /^"399-300" is inverted \(hint: write "300-399"\)$/ },
  { name: 'expect status below 100', input: hc({ type: 'http', expect: [99] }), path: 'services[0].healthCheck.expect[0]', msg: /^99 is outside the HTTP status codes 100\.\.599$/ },
  { name: 'expect range above 599', input: hc({ type: 'http', expect: ['200-600'] }), path: 'services[0].healthCheck.expect[0]', msg: /outside the HTTP status codes/ },
  { name: 'method lower case', input: hc({ type: 'http', method: 'get' }), path: 'services[0].healthCheck.method', msg: /^"get" is not one of GET, HEAD, POST, OPTIONS \(did you mean "GET"\?\)$/ },
  { name: 'path without a slash', input: hc({ type: 'http', path: 'healthz' }), path: 'services[0].healthCheck.path', msg: /must start with "\/"/ },
  { name: 'http key on a tcp check', input: hc({ type: 'tcp', path: '/healthz' }), path: 'services[0].healthCheck.path', msg: /^"path" is for http\/https checks, not tcp \(hint: set type: http/ },
  { name: 'insecure on http', input: hc({ type: 'http', insecure: true }), path: 'services[0].healthCheck.insecure', msg: /^"insecure" is for https checks, not http/ },
  { name: 'payload on an http check', input: hc({ type: 'http', payload: 'ping' }), path: 'services[0].healthCheck.payload', msg: /^"payload" is for udp checks, not http/ },
  { name: 'udp expect on an http check', input: hc({ type: 'http', expect: 'reply' }), path: 'services[0].healthCheck.expect', msg: /^expect: "reply" is for udp checks, not http/ },
  { name: 'payload hex', input: hc({ type: 'udp', payload: { hex: 'abc' } }), path: 'services[0].healthCheck.payload.hex', msg: /^"abc" is not hex bytes/ },
  { name: 'command as a string', input: hc({ type: 'exec', command: '/bin/check --fast' }), path: 'services[0].healthCheck.command', msg: /^expected a list \(argv\), got a string \(hint: no shell/ },
  { name: 'command relative', input: hc({ type: 'exec', command: ['check'] }), path: 'services[0].healthCheck.command[0]', msg: /^"check" is not an absolute path/ },
  { name: 'exec without a command', input: hc({ type: 'exec' }), path: 'services[0].healthCheck.command', msg: /^missing \(required for type exec/ },
  { name: 'datapath on nat', input: hc({ datapath: true }, 'nat'), path: 'services[0].healthCheck.datapath', msg: /^datapath probing is for l2dsr and ipip services, not nat/ },
  {
    name: 'a defaults key that does not fit a service',
    input: mut((c) => (c['defaults'] = { healthCheck: { path: '/healthz' } })),
    path: 'defaults.healthCheck.path',
    msg: /^"path" is for http\/https checks, but services\[0\] has type tcp \(the default for proto tcp\) \(in the check of services\[0\]\)/,
  },
  {
    name: 'a backend override key that does not fit the service type',
    input: svc((s) => {
      s['healthCheck'] = { type: 'tcp' };
      s['backends'][1].healthCheck = { path: '/x' };
    }),
    path: 'services[0].backends[1].healthCheck.path',
    msg: /^"path" is for http\/https checks, but services\[0\]\.healthCheck sets type tcp/,
  },
  {
    name: 'a backend override breaks timeout < interval',
    input: svc((s) => {
      s['healthCheck'] = { interval: '5s', timeout: '3s' };
      s['backends'][1].healthCheck = { interval: '3s' };
    }),
    path: 'services[0].backends[1].healthCheck.interval',
    msg: /^timeout 3s must be shorter than interval 3s$/,
  },
];

function problems(input: Obj | string, source?: string): { err: unknown } {
  const text = typeof input === 'string' ? input : stringify(input);
  try {
    parseConfig(text, source ?? 'case.yaml');
  } catch (err) {
    return { err };
  }
  return { err: undefined };
}

t.test('every malformed input is refused with its path and a pointed message', async (t) => {
  t.ok(cases.length >= 45, `${cases.length} cases`);
  const names = new Set<string>();
  for (const c of cases) {
    t.notOk(names.has(c.name), `case names are unique: ${c.name}`);
    names.add(c.name);
    const { err } = problems(c.input, c.source);
    if (!isLbError(err)) {
      t.fail(`${c.name}: expected ERR_LB_CONFIG, got ${err === undefined ? 'success' : String(err)}`);
      continue;
    }
    t.equal(err.code, 'ERR_LB_CONFIG', `${c.name}: code`);
    t.ok(err instanceof ConfigError, `${c.name}: a ConfigError`);
    const lines = (err.detail ?? '').split('\n');
    const hit = lines.find((l) => l.startsWith(`${c.path}: `) && c.msg.test(l.slice(c.path.length + 2)));
    t.ok(hit, `${c.name}: ${c.path}: ${c.msg}`, { detail: err.detail });
    t.match(err.message, /^config case\.yaml: \d+ problems?$|^config config\.json: \d+ problems?$/, `${c.name}: message`);
    const n = (err as ConfigError).violations.length;
    t.equal(lines.length, n, `${c.name}: one detail line per violation`);
  }
});

t.test('several problems are reported together, each with its path', async (t) => {
  const text = `node:
  interfaces: [eth0]
  ringSize: 1000
  flowBucket: 1024
services:
  - name: web
    vip: 10.0.0.300
    port: 80
    mode: l2dsr
  - name: api
    vip: 10.0.0.20
    port: 80
    mode: nat
    healthCheck: { interval: 2 }
    backends:
      - { address: 10.0.0.21, weight: -5 }
      - { address: 10.0.0.22, mac: "02:00:00:00:00:22" }
  - { vip: 10.0.0.30, port: 0, mode: ipip }
`;
  const { err } = problems(text);
  t.ok(err instanceof ConfigError);
  const e = err as ConfigError;
  t.equal(e.message, 'config case.yaml: 7 problems');
  t.same(
    e.violations.map((v) => v.path),
    [
      'node.ringSize',
      'node.flowBucket',
      'services[0].vip',
      'services[1].healthCheck.interval',
      'services[1].backends[0].weight',
      'services[1].backends[1].mac',
      'services[2].port',
    ],
    e.detail ?? '',
  );
  t.equal(e.detail?.split('\n').length, 7);
  t.equal(e.exitCode, 2, 'a config error exits 2');
});

t.test('a cross-check still runs when the only other problem is an unknown key', async (t) => {
  const { err } = problems(
    stringify(
      svc((s) => {
        s['mode'] = 'ipip';
        s['vip'] = '2001:db8::10';
        s['colour'] = 'blue';
      }),
    ),
  );
  const e = err as ConfigError;
  t.match(e.detail, /^services\[0\]\.colour: unknown key "colour"/m);
  t.match(e.detail, /^services\[0\]\.backends\[0\]\.address: 10\.0\.0\.11 is IPv4 but the VIP 2001:db8::10 is IPv6/m);
});

t.test('parseConfig without a source', async (t) => {
  t.throws(() => parseConfig(''), { code: 'ERR_LB_CONFIG', message: 'config: 1 problem' });
});
