// The rise/fall state machine and the probe timing (pure functions).
import t from 'tap';
import { firstDelay, HISTORY_LENGTH, initialStatus, nextDelay, observe, type HealthStatus } from '../../src/health/index.js';

const OK = { ok: true, ms: 1, detail: 'fine' };
const BAD = { ok: false, ms: 1, detail: 'connect ECONNREFUSED' };

/** Feed a sequence ('+' success, '-' failure) and collect the states after each probe. */
function run(seq: string, rise: number, fall: number, start: HealthStatus = initialStatus()): { status: HealthStatus; states: string[] } {
  let status = start;
  const states: string[] = [];
  [...seq].forEach((c, i) => {
    status = observe(status, c === '+' ? OK : BAD, 1000 + i, { rise, fall }).status;
    states.push(status.state);
  });
  return { status, states };
}

t.test('unknown: rise successes bring it up, fall failures take it down', async (t) => {
  t.same(run('+++', 3, 2).states, ['unknown', 'unknown', 'up']);
  t.same(run('--', 3, 2).states, ['unknown', 'down']);
  // a broken streak starts over
  t.same(run('++-++', 3, 2).states, ['unknown', 'unknown', 'unknown', 'unknown', 'unknown']);
  t.same(run('-+-', 3, 2).states, ['unknown', 'unknown', 'unknown']);
  t.same(run('+', 1, 1).states, ['up']);
  t.same(run('-', 1, 1).states, ['down']);
});

t.test('up: only fall consecutive failures take it down; successes reset the count', async (t) => {
  const up = run('++', 2, 3).status;
  t.equal(up.state, 'up');
  t.same(run('--+--+---', 2, 3, up).states, ['up', 'up', 'up', 'up', 'up', 'up', 'up', 'up', 'down']);
});

t.test('down: only rise consecutive successes bring it up; failures reset the count', async (t) => {
  const down = run('---', 2, 3).status;
  t.equal(down.state, 'down');
  t.same(run('+-+-++', 2, 3, down).states, ['down', 'down', 'down', 'down', 'down', 'up']);
});

t.test('rise/fall below 1 act as 1 (a config that slipped through cannot wedge a backend)', async (t) => {
  t.same(run('+-', 0, 0).states, ['up', 'down']);
});

t.test('transitions carry the causing detail and time; counters count', async (t) => {
  let s = initialStatus();
  const r1 = observe(s, OK, 10, { rise: 1, fall: 1 });
  t.same(r1.transition, { from: 'unknown', to: 'up', at: 10, detail: 'fine' });
  s = r1.status;
  const r2 = observe(s, BAD, 20, { rise: 1, fall: 1 });
  t.same(r2.transition, { from: 'up', to: 'down', at: 20, detail: 'connect ECONNREFUSED' });
  t.equal(observe(r2.status, BAD, 30, { rise: 1, fall: 1 }).transition, null, 'no transition while the state holds');
  const { status } = run('++-+--+', 5, 5);
  t.equal(status.probes, 7);
  t.equal(status.failures, 3);
  t.equal(status.consecutiveSuccesses, 1);
  t.equal(status.consecutiveFailures, 0);
  t.same(status.last, { ...OK, at: 1006 });
  t.same(s, { ...initialStatus(), state: 'up', consecutiveSuccesses: 1, probes: 1, last: { ...OK, at: 10 }, history: [r1.transition] });
});

t.test('observe is pure: the input status is not changed', async (t) => {
  const s = initialStatus();
  const copy = JSON.parse(JSON.stringify(s)) as HealthStatus;
  observe(s, OK, 1, { rise: 1, fall: 1 });
  t.same(s, copy);
});

t.test(`history keeps the last ${HISTORY_LENGTH} transitions, oldest first`, async (t) => {
  const { status } = run('+-'.repeat(20), 1, 1);
  t.equal(status.history.length, HISTORY_LENGTH);
  t.equal(status.probes, 40);
  const last = status.history[HISTORY_LENGTH - 1];
  t.same(last, { from: 'up', to: 'down', at: 1039, detail: BAD.detail });
  t.equal(status.history[0]?.at, 1030, 'the oldest kept is the 31st probe');
  t.ok(status.history.every((h, i, a) => i === 0 || h.at > (a[i - 1]?.at ?? 0)));
});

t.test('jitter: every interval within interval x [1-j, 1+j], spread over the whole band', async (t) => {
  for (const [interval, j] of [
    [2000, 0.1],
    [1000, 0.5],
    [500, 0.25],
  ] as const) {
    const xs = Array.from({ length: 20_000 }, () => nextDelay(interval, j));
    const min = Math.min(...xs);
    const max = Math.max(...xs);
    t.ok(min >= interval * (1 - j) && max <= interval * (1 + j), `${interval} ms ±${j}: ${min.toFixed(1)}..${max.toFixed(1)}`);
    const band = 2 * j * interval;
    t.ok(min - interval * (1 - j) < band * 0.01 && interval * (1 + j) - max < band * 0.01, 'reaches both ends of the band');
    const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
    t.ok(Math.abs(mean - interval) < band * 0.02, `centred: mean ${mean.toFixed(1)}`);
    // 10 equal bins each get about a tenth
    const bins = new Array<number>(10).fill(0);
    for (const x of xs) bins[Math.min(9, Math.floor(((x - interval * (1 - j)) / band) * 10))]!++;
    t.ok(bins.every((n) => n > 1500 && n < 2500), `uniform: ${bins.join(' ')}`);
  }
  t.equal(nextDelay(1000, 0), 1000, 'no jitter: the interval itself');
  t.equal(nextDelay(1000, 0.2, () => 0), 800);
  // the largest draw below 1 may round to the band's upper end: the band is closed
  t.ok(nextDelay(1000, 0.2, () => 0.9999999) < 1200);
  const clamped = nextDelay(1000, 0.2, () => 7);
  t.ok(clamped <= 1200 && clamped > 1199.99, `a generator out of [0,1) is clamped (${clamped})`);
  t.equal(nextDelay(1000, 0.2, () => NaN), 800);
});

t.test('first delay: within [0, interval), spread', async (t) => {
  const xs = Array.from({ length: 20_000 }, () => firstDelay(2000));
  t.ok(xs.every((x) => x >= 0 && x < 2000));
  t.ok(Math.min(...xs) < 20 && Math.max(...xs) > 1980, 'covers the interval');
  const bins = new Array<number>(10).fill(0);
  for (const x of xs) bins[Math.floor(x / 200)]!++;
  t.ok(bins.every((n) => n > 1500 && n < 2500), `uniform: ${bins.join(' ')}`);
  t.equal(firstDelay(2000, () => 0), 0);
  t.ok(firstDelay(2000, () => 1) < 2000, 'never a full interval');
});
