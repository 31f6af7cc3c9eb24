// Host specs: [user@]host[:port], IPv6 in brackets, validated once.
import t from 'tap';
import { hostKey, knownHostsName, parseHostSpec } from '../../src/serverprep/hostspec.js';

t.test('accepted forms', async (t) => {
  const d = { user: 'root' };
  t.same(parseHostSpec('10.0.0.1', d), { spec: '10.0.0.1', user: 'root', host: '10.0.0.1', port: 22 });
  t.same(parseHostSpec('admin@10.0.0.1', d), { spec: 'admin@10.0.0.1', user: 'admin', host: '10.0.0.1', port: 22 });
  t.same(parseHostSpec('10.0.0.1:2222', d), { spec: '10.0.0.1:2222', user: 'root', host: '10.0.0.1', port: 2222 });
  t.same(parseHostSpec('ops@be-1.example.com:2200', d), { spec: 'ops@be-1.example.com:2200', user: 'ops', host: 'be-1.example.com', port: 2200 });
  t.same(parseHostSpec('[2001:db8::1]', d), { spec: '[2001:db8::1]', user: 'root', host: '2001:db8::1', port: 22 });
  t.same(parseHostSpec('[2001:db8::1]:2222', d), { spec: '[2001:db8::1]:2222', user: 'root', host: '2001:db8::1', port: 2222 });
  t.same(parseHostSpec('u@[::1]:22', d), { spec: 'u@[::1]:22', user: 'u', host: '::1', port: 22 });
  t.same(parseHostSpec('2001:db8::1', d).host, '2001:db8::1', 'bare IPv6: the whole thing, port 22');
  t.equal(parseHostSpec('2001:db8::1', d).port, 22);
  t.equal(parseHostSpec('[backend1]:23', d).host, 'backend1', 'a name in brackets is fine too (as in ssh)');
  t.equal(parseHostSpec('be_1.internal', d).host, 'be_1.internal');
  t.equal(parseHostSpec('h', { user: 'x', port: 2022 }).port, 2022, 'default port');
  t.equal(parseHostSpec('h').user.length > 0, true, 'default user: the current one');
});

t.test('refused forms', async (t) => {
  const bad = [
    '',
    'a@b@c',
    '@host',
    'user@',
    'host:',
    'host:0',
    'host:65536',
    'host:22x',
    'host:-1',
    '[::1',
    '[::1]x',
    '[::1]:',
    '-oProxyCommand=x',
    'host name',
    'host\nname',
    "host'",
    'host;reboot',
    '$(reboot)',
    'h`x`',
    'ho*st',
    '1.2.3.4.5:22x',
    'bad user@host',
    '-user@host',
    '..',
    'a..b',
    'x'.repeat(301),
    `${'a'.repeat(64)}.com`,
    '[2001:db8::zz]:22',
  ];
  for (const s of bad) t.throws(() => parseHostSpec(s, { user: 'root' }), { code: 'ERR_LB_USAGE' }, JSON.stringify(s));
});

t.test('known_hosts names and dedupe keys', async (t) => {
  t.equal(knownHostsName('Host.Example', 22), 'host.example');
  t.equal(knownHostsName('10.0.0.1', 2222), '[10.0.0.1]:2222');
  t.equal(knownHostsName('2001:db8::1', 22), '2001:db8::1');
  t.equal(knownHostsName('2001:db8::1', 2200), '[2001:db8::1]:2200');
  const a = parseHostSpec('root@10.0.0.1:22', { user: 'root' });
  const b = parseHostSpec('10.0.0.1', { user: 'root' });
  const c = parseHostSpec('10.0.0.1:2222', { user: 'root' });
  t.equal(hostKey(a), hostKey(b), 'same login, written differently');
  t.not(hostKey(a), hostKey(c), 'another port is another host');
});
