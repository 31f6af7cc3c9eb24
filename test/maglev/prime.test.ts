import t from 'tap';
import { isPrime, nextPrime } from '../../src/maglev/prime.js';

t.test('isPrime agrees with a sieve below 20000', async (t) => {
  const limit = 20000;
  const composite = new Uint8Array(limit);
  composite[0] = 1;
  composite[1] = 1;
  for (let i = 2; i * i < limit; i++) if (!composite[i]) for (let j = i * i; j < limit; j += i) composite[j] = 1;
  let bad = 0;
  for (let i = 0; i < limit; i++) if (isPrime(i) !== !composite[i]) bad++;
  t.equal(bad, 0);
});

t.test('isPrime on table sizes and odd input', async (t) => {
  t.ok(isPrime(65537));
  t.ok(isPrime(655373));
  t.ok(isPrime(16777213));
  t.notOk(isPrime(65536));
  t.notOk(isPrime(655371));
  for (const x of [-7, 0, 1, 2.5, Number.NaN, Number.POSITIVE_INFINITY]) t.notOk(isPrime(x), String(x));
});

t.test('nextPrime returns the smallest prime >= n', async (t) => {
  t.equal(nextPrime(-5), 2);
  t.equal(nextPrime(0), 2);
  t.equal(nextPrime(2), 2);
  t.equal(nextPrime(2.5), 3);
  t.equal(nextPrime(4), 5);
  t.equal(nextPrime(65536), 65537);
  t.equal(nextPrime(65537), 65537);
  t.equal(nextPrime(655360), 655373);
  t.throws(() => nextPrime(Number.POSITIVE_INFINITY), RangeError);
});
