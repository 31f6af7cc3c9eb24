import { chmodSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { ConfigFile, loadConfigFile } from '../../src/config/index.js';

const YAML_TEXT = `# xdplb on lb1
node:
  interfaces: [eth0, eth1] # both uplinks
  ringSize: 65537

  log: {level: info}

# one entry per VIP
services:
  # the web tier
  - name: web
    vip: 10.0.0.10
    port: 80
    mode: l2dsr
    healthCheck:
      type: http
      path: /healthz # cheap
      expect: [200, "300-399"]
    backends:
      - address: 10.0.0.11 # rack 1
        weight: 1 # full share
        mac: "02:00:00:00:00:11"
      - {address: 10.0.0.12, weight: 2}

  - vip: "2001:db8::10"
    port: 443
    mode: l2dsr
    backends: []
`;

function setup(t: Test, text = YAML_TEXT, name = 'config.yaml') {
  const dir = t.testdir({ [name]: text });
  return { dir, path: join(dir, name), f: ConfigFile.load(join(dir, name)) };
}

t.test('load keeps the text and gives the Config', async (t) => {
  const { f, path } = setup(t);
  t.equal(f.text, YAML_TEXT);
  t.equal(f.path, path);
  t.equal(f.format, 'yaml');
  t.same(
    f.config.services.map((s) => s.name),
    ['web', '[2001:db8::10]:443/tcp'],
  );
  t.same(loadConfigFile(path), f.config);
});

t.test('setBackend changes one value and nothing else', async (t) => {
  const { f } = setup(t);
  const g = f.setBackend('web', '10.0.0.11', { weight: 0 });
  t.equal(g.text, YAML_TEXT.replace('weight: 1 # full share', 'weight: 0 # full share'), 'comments, order and blank lines survive');
  t.equal(g.config.services[0]?.backends[0]?.weight, 0);
  t.equal(f.config.services[0]?.backends[0]?.weight, 1, 'the original is untouched');
  t.equal(f.text, YAML_TEXT);
  const h = f.setBackend('10.0.0.10:80/tcp', '10.0.0.12', { weight: 5 });
  t.equal(h.text, YAML_TEXT.replace('{address: 10.0.0.12, weight: 2}', '{address: 10.0.0.12, weight: 5}'), 'flow style kept');
});

t.test('addService and addBackend append, keeping the rest', async (t) => {
  const { f } = setup(t);
  const g = f
    .addBackend('[2001:DB8:0::10]:443/tcp', { address: '2001:db8::11' })
    .addService({ name: 'dns', vip: '10.0.0.53', port: 53, proto: 'udp', mode: 'ipip', backends: [{ address: '10.1.0.1' }] });
  const want = YAML_TEXT.replace(
    '    backends: []\n',
    `    backends:
      - address: 2001:db8::11
  - name: dns
    vip: 10.0.0.53
    port: 53
    proto: udp
    mode: ipip
    backends:
      - address: 10.1.0.1
`,
  );
  t.equal(g.text, want);
  t.same(
    g.config.services.map((s) => [s.name, s.backends.map((b) => b.address)]),
    [
      ['web', ['10.0.0.11', '10.0.0.12']],
      ['[2001:db8::10]:443/tcp', ['2001:db8::11']],
      ['dns', ['10.1.0.1']],
    ],
  );
});

t.test('setService merge-patches: nested mappings merge, null deletes', async (t) => {
  const { f } = setup(t);
  const g = f.setService('web', { port: 8080, healthCheck: { path: '/ready', rise: 3, expect: null }, hashSourceOnly: true });
  t.equal(
    g.text,
    YAML_TEXT.replace('port: 80\n', 'port: 8080\n')
      .replace('path: /healthz # cheap\n      expect: [200, "300-399"]\n', 'path: /ready # cheap\n      rise: 3\n')
      .replace('      - {address: 10.0.0.12, weight: 2}\n', '      - {address: 10.0.0.12, weight: 2}\n    hashSourceOnly: true\n'),
  );
  const s = g.config.services[0];
  t.equal(s?.port, 8080);
  t.equal(s?.healthCheck.http?.path, '/ready');
  t.same(s?.healthCheck.http?.expect, [{ from: 200, to: 399 }], 'deleted expect falls back to the default');
  t.equal(g.config.services[0]?.name, 'web');
});

t.test('deleteService and deleteBackend', async (t) => {
  const { f } = setup(t);
  const g = f.deleteService('[2001:db8::10]:443/tcp');
  t.same(
    g.config.services.map((s) => s.name),
    ['web'],
  );
  t.match(g.text, /^# xdplb on lb1\n/);
  t.match(g.text, /# the web tier\n {2}- name: web\n/);
  const h = g.deleteBackend('10.0.0.10:80', '10.0.0.11');
  t.same(
    h.config.services[0]?.backends.map((b) => b.address),
    ['10.0.0.12'],
  );
  t.notMatch(h.text, /rack 1/);
  t.match(h.text, /path: \/healthz # cheap/);
  const i = f.deleteService('web');
  t.same(
    i.config.services.map((s) => s.name),
    ['[2001:db8::10]:443/tcp'],
  );
});

t.test('unknown service or backend: ERR_LB_CONFIG naming the known ones', async (t) => {
  const { f } = setup(t);
  t.throws(() => f.setService('nope', { port: 1 }), {
    code: 'ERR_LB_CONFIG',
    message: /^no service "nope"; known: web \(10\.0\.0\.10:80\/tcp\), \[2001:db8::10\]:443\/tcp$/,
  });
  t.throws(() => f.deleteService('10.0.0.10:80/udp'), { code: 'ERR_LB_CONFIG', message: /^no service/ });
  t.throws(() => f.setBackend('web', '10.0.0.99', { weight: 0 }), {
    code: 'ERR_LB_CONFIG',
    message: /^service web has no backend "10\.0\.0\.99"; its backends: 10\.0\.0\.11, 10\.0\.0\.12$/,
  });
  t.throws(() => f.addService([1, 2] as unknown as object), { code: 'ERR_LB_CONFIG', message: /must be a mapping/ });
});

t.test('an edit that breaks the config throws; nothing changes', async (t) => {
  const { f, path } = setup(t);
  const before = statSync(path).mtimeMs;
  t.throws(() => f.setBackend('web', '10.0.0.11', { weight: 70000 }), {
    code: 'ERR_LB_CONFIG',
    message: /^config .*config\.yaml \(edited\): 1 problem$/,
    detail: 'services[0].backends[0].weight: must be at most 65535, got 70000',
  });
  t.throws(() => f.addBackend('web', { address: '10.0.0.11' }), { code: 'ERR_LB_CONFIG', detail: /^services\[0\]\.backends\[2\]\.address: 10\.0\.0\.11 is already backends\[0\]$/ });
  t.throws(() => f.addService({ vip: '10.0.0.10', port: 80, mode: 'ipip' }), { code: 'ERR_LB_CONFIG', detail: /^services\[2\]: 10\.0\.0\.10:80\/tcp is already services\[0\]/ });
  t.throws(() => f.setService('web', { healthCheck: { type: 'tcp', path: '/x' } }), { code: 'ERR_LB_CONFIG', detail: /"path" is for http\/https checks, not tcp/ });
  t.throws(() => f.replaceWith('node: {}\n'), { code: 'ERR_LB_CONFIG', detail: /^node\.interfaces: missing/ });
  t.equal(f.text, YAML_TEXT);
  t.equal(f.config.services[0]?.backends.length, 2);
  t.equal(readFileSync(path, 'utf8'), YAML_TEXT);
  t.equal(statSync(path).mtimeMs, before);
});

t.test('save is atomic, keeps the mode and leaves no temporary file', async (t) => {
  const { f, dir, path } = setup(t);
  chmodSync(path, 0o640);
  const g = f.setBackend('web', '10.0.0.11', { weight: 0 });
  t.equal(readFileSync(path, 'utf8'), YAML_TEXT, 'editing writes nothing');
  g.save();
  t.equal(readFileSync(path, 'utf8'), g.text);
  t.equal(statSync(path).mode & 0o777, 0o640);
  t.same(readdirSync(dir), ['config.yaml']);
  const h = g.setBackend('web', '10.0.0.11', { weight: 1 });
  h.save();
  t.equal(readFileSync(path, 'utf8'), YAML_TEXT);
  t.same(ConfigFile.load(path).config, f.config);
});

t.test('save refuses to overwrite a hand edit made since the file was read', async (t) => {
  const { f, path } = setup(t);
  const g = f.setBackend('web', '10.0.0.11', { weight: 0 });
  const handEdited = YAML_TEXT.replace('ringSize: 65537', 'ringSize: 257');
  writeFileSync(path, handEdited);
  t.throws(() => g.save(), { code: 'ERR_LB_CONFIG', message: /changed on disk since it was read/ });
  t.equal(readFileSync(path, 'utf8'), handEdited);
  const fresh = ConfigFile.load(path).setBackend('web', '10.0.0.11', { weight: 0 });
  fresh.save();
  t.match(readFileSync(path, 'utf8'), /ringSize: 257[\s\S]*weight: 0 # full share/);
});

t.test('save writes through a symlink and recreates a missing directory', async (t) => {
  const dir = t.testdir({ real: { 'config.yaml': YAML_TEXT } });
  const link = join(dir, 'config.yaml');
  symlinkSync(join(dir, 'real', 'config.yaml'), link);
  const g = ConfigFile.load(link).setBackend('web', '10.0.0.12', { weight: 0 });
  g.save();
  t.ok(statSync(link).isFile());
  t.equal(readFileSync(join(dir, 'real', 'config.yaml'), 'utf8'), g.text);
  t.same(readdirSync(join(dir, 'real')), ['config.yaml']);

  const gone = join(dir, 'sub', 'config.yaml');
  writeFileSync(join(dir, 'x.yaml'), YAML_TEXT);
  const f = ConfigFile.load(join(dir, 'x.yaml'));
  rmSync(join(dir, 'x.yaml'));
  t.doesNotThrow(() => f.save(), 'a deleted file is written again');
  t.equal(readFileSync(join(dir, 'x.yaml'), 'utf8'), YAML_TEXT);
  t.throws(() => ConfigFile.load(gone), { code: 'ERR_LB_CONFIG', errno: 'ENOENT', message: /no such file/, hint: /create it/ });
});

t.test('a JSON file stays JSON', async (t) => {
  const json = `${JSON.stringify({ node: { interfaces: ['eth0'] }, services: [{ name: 'web', vip: '10.0.0.10', port: 80, mode: 'l2dsr', backends: [{ address: '10.0.0.11' }] }] }, null, 2)}\n`;
  const { f, path } = setup(t, json, 'config.json');
  t.equal(f.format, 'json');
  const g = f.setBackend('web', '10.0.0.11', { weight: 0 }).addBackend('web', { address: '10.0.0.12', weight: 2 });
  t.equal(
    g.text,
    `${JSON.stringify({ node: { interfaces: ['eth0'] }, services: [{ name: 'web', vip: '10.0.0.10', port: 80, mode: 'l2dsr', backends: [{ address: '10.0.0.11', weight: 0 }, { address: '10.0.0.12', weight: 2 }] }] }, null, 2)}\n`,
  );
  g.save();
  t.same(JSON.parse(readFileSync(path, 'utf8')).services[0].backends[1], { address: '10.0.0.12', weight: 2 });
  const r = g.replaceWith('node:\n  interfaces: [eth1] # yaml for a json file\n');
  t.equal(r.format, 'json');
  t.equal(r.text, `${JSON.stringify({ node: { interfaces: ['eth1'] } }, null, 2)}\n`);
});

t.test('replaceWith keeps the new text as given', async (t) => {
  const { f, path } = setup(t);
  const text = '# replaced\nnode:\n  interfaces: [eth2]\n';
  const g = f.replaceWith(text);
  t.equal(g.text, text);
  t.same(g.config.node.interfaces, ['eth2']);
  t.equal(readFileSync(path, 'utf8'), YAML_TEXT);
  g.save();
  t.equal(readFileSync(path, 'utf8'), text);
  t.throws(() => f.replaceWith('node: [\n'), { code: 'ERR_LB_CONFIG', detail: /^line \d+, column \d+: YAML syntax error/ });
});

t.test('nat backends are picked by address:port', async (t) => {
  const { f } = setup(
    t,
    `node: {interfaces: [eth0]}
services:
  - name: smtp
    vip: 10.0.0.25
    port: 25
    mode: nat
    backends:
      - {address: 10.0.0.26, port: 2525}
      - {address: 10.0.0.26, port: 2526}
`,
  );
  t.throws(() => f.deleteBackend('smtp', '10.0.0.26'), { message: /ambiguous .*10\.0\.0\.26:2525, 10\.0\.0\.26:2526/ });
  const g = f.setBackend('smtp', '10.0.0.26:2526', { weight: 0 });
  t.same(
    g.config.services[0]?.backends.map((b) => b.weight),
    [1, 0],
  );
});

t.test('load: unreadable paths', async (t) => {
  const dir = t.testdir({ 'empty.yaml': '' });
  t.throws(() => ConfigFile.load(dir), { code: 'ERR_LB_CONFIG', errno: 'EISDIR' });
  t.throws(() => ConfigFile.load(join(dir, 'empty.yaml')), { code: 'ERR_LB_CONFIG', detail: /the file is empty/ });
  t.throws(() => loadConfigFile(join(dir, 'missing.yaml')), { code: 'ERR_LB_CONFIG', errno: 'ENOENT' });
});

t.test('the file keeps its own indentation; a missing services list is created', async (t) => {
  const flush = `node:
  interfaces: [eth0]
services:
- name: web
  vip: 10.0.0.10
  port: 80
  mode: l2dsr
  backends:
  - address: 10.0.0.11
`;
  const { f } = setup(t, flush);
  t.equal(f.setBackend('web', '10.0.0.11', { weight: 0 }).text, flush.replace('  - address: 10.0.0.11\n', '  - address: 10.0.0.11\n    weight: 0\n'));
  const four = `node:
    interfaces: [eth0]
services:
    - name: web
      vip: 10.0.0.10
      port: 80
      mode: l2dsr
      backends:
          - address: 10.0.0.11
`;
  t.equal(
    setup(t, four, 'four.yaml').f.setBackend('web', '10.0.0.11', { weight: 0 }).text,
    four.replace('- address: 10.0.0.11\n', '- address: 10.0.0.11\n            weight: 0\n'),
  );

  const bare = 'node:\n  interfaces: [eth0]\n';
  const g = setup(t, bare, 'bare.yaml').f.addService({ vip: '10.0.0.10', port: 80, mode: 'l2dsr' });
  t.equal(g.text, `${bare}services:\n  - vip: 10.0.0.10\n    port: 80\n    mode: l2dsr\n`);
  const h = setup(t, `${bare}services: []\n`, 'empty.yaml').f.addService({ vip: '10.0.0.10', port: 80, mode: 'l2dsr' });
  t.equal(h.text, g.text, 'an empty flow list becomes a block list');
});
