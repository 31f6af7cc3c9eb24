/**
 * Primality helpers for the Maglev table size. Maglev needs a prime M so that every skip in
 * [1, M-1] is coprime with M, which makes each backend's preference list a full permutation.
 * Trial division is plenty: sizes are at most a few million and are checked once per build.
 */

/** True when `n` is a prime integer. Non-integers, NaN and numbers below 2 are not prime. */
export function isPrime(n: number): boolean {
  if (!Number.isSafeInteger(n) || n < 2) return false;
  if (n < 4) return true;
  if (n % 2 === 0 || n % 3 === 0) return false;
  // Every prime above 3 is 6k ± 1.
  for (let d = 5; d * d <= n; d += 6) {
    if (n % d === 0 || n % (d + 2) === 0) return false;
  }
  return true;
}

/**
 * The smallest prime >= `n` (so `nextPrime(p) === p` for a prime p): callers ask for "a table
 * of at least n slots". Throws RangeError for non-finite input or when the answer would not
 * be a safe integer.
 */
export function nextPrime(n: number): number {
  if (!Number.isFinite(n)) throw new RangeError(`nextPrime: ${n} is not a finite number`);
  let c = Math.max(2, Math.ceil(n));
  if (c > 2 && c % 2 === 0) c += 1;
  while (!isPrime(c)) {
    c += c === 2 ? 1 : 2;
    if (!Number.isSafeInteger(c)) throw new RangeError(`nextPrime: no safe prime at or above ${n}`);
  }
  return c;
}
