// shQuote/shJoin: every word must come out of a real shell exactly as it went in.
import t from 'tap';
import { run } from '../../src/lab/exec.js';
import { scriptCommand } from '../../src/serverprep/remote.js';
import { shJoin, shQuote } from '../../src/serverprep/quote.js';

const NASTY = [
  '',
  ' ',
  'plain',
  "it's",
  "''",
  "'",
  "'\\''",
  '"double" quotes',
  '$(touch /tmp/xssh-pwned)',
  '`touch /tmp/xssh-pwned`',
  '${HOME}',
  '$HOME',
  'a\nb',
  'line\n',
  '\n',
  'tab\there',
  'semi;colon && or || pipe | amp &',
  '> redirect < in',
  '* ? [a-z] ~ ~root',
  '!bang !! !$',
  '\\backslash\\',
  '#not a comment',
  '--vip',
  '-n',
  'ünïcödé ✓',
  '\x01\x1b[31mred\x7f',
  "a'b\"c$d`e\\f\ng",
];

for (const shell of ['bash', 'sh']) {
  t.test(`${shell} reads every quoted word back unchanged`, async (t) => {
    // printf '%s\0' prints each argument followed by NUL: split on NUL gives the words back.
    const r = await run([shell, '-c', `printf '%s\\0' ${shJoin(NASTY)}`]);
    const words = r.stdout.split('\0');
    t.equal(words.pop(), '', 'output ends with a NUL');
    t.same(words, NASTY);
  });
}

t.test('one word at a time, too', async (t) => {
  for (const w of NASTY) {
    const r = await run(['bash', '-c', `printf '%s' ${shQuote(w)}`]);
    t.equal(r.stdout, w, JSON.stringify(w));
  }
});

t.test('nothing is executed: command substitutions stay text', async (t) => {
  const r = await run(['bash', '-c', `printf '%s' ${shQuote('$(echo EXECUTED)`echo EXECUTED`')}`]);
  t.equal(r.stdout, '$(echo EXECUTED)`echo EXECUTED`');
  t.notMatch(r.stdout, /^EXECUTED/);
});

t.test('always quoted, quote escaped as close-escape-reopen', async (t) => {
  t.equal(shQuote('abc'), "'abc'");
  t.equal(shQuote(''), "''");
  t.equal(shQuote("a'b"), "'a'\\''b'");
  t.equal(shJoin(['bash', '-s', '--', 'add']), "'bash' '-s' '--' 'add'");
});

t.test('NUL is refused (it cannot be in an argv)', async (t) => {
  t.throws(() => shQuote('a\0b'), { code: 'ERR_LB_USAGE' });
});

t.test('the remote command line: bash -s, through sudo -n when not root', async (t) => {
  t.same(scriptCommand(false, ['add', '--vip', '10.0.0.1']), ['bash', '-s', '--', 'add', '--vip', '10.0.0.1']);
  t.same(scriptCommand(true, ['check']), ['sudo', '-n', '--', 'bash', '-s', '--', 'check']);
  // what sshd's `$SHELL -c` would see, parsed by a real shell: the same words
  const words = scriptCommand(false, ['add', '--vip', "1.2.3.4'; rm -rf /tmp/x #"]);
  const r = await run(['bash', '-c', `printf '%s\\0' ${shJoin(words)}`]);
  t.same(r.stdout.split('\0').slice(0, -1), words);
});
