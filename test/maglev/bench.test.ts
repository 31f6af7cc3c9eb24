import t from 'tap';
import { benchMaglev } from '../../src/maglev/bench.js';

// Shape only: timing figures are for `make bench`, never asserted here.
t.test('benchMaglev reports one row per size, pool and weighting', async (t) => {
  const rows = benchMaglev({ backends: [3, 5], sizes: [251], runs: 3 });
  t.equal(rows.length, 4);
  for (const r of rows) {
    t.equal(r.size, 251);
    t.equal(r.runs, 3);
    t.ok(r.minMs <= r.medianMs && r.medianMs <= r.maxMs);
  }
});
