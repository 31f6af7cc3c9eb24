/**
 * Explains why two frames differ, for fixture failures: a hex dump of the rows that differ (with
 * one row of context), carets under the differing bytes, then the differing header fields by name
 * with both values, so "ipv4.ttl: 64 -> 63" is read instead of counted out from offsets.
 */
import { type FieldSpan, formatField, frameFields } from './parse.js';

const ROW = 16;

function hexRow(b: Buffer, start: number): string[] {
  const cells: string[] = [];
  for (let i = start; i < start + ROW; i++) {
    const v = b[i];
    cells.push(v === undefined ? '  ' : v.toString(16).padStart(2, '0'));
  }
  return cells;
}

function off(n: number): string {
  return n.toString(16).padStart(4, '0');
}

/** The span that names each offset, preferring the innermost (last recorded) one. */
function spanAt(spans: FieldSpan[], offset: number): FieldSpan | undefined {
  let found: FieldSpan | undefined;
  for (const s of spans) if (offset >= s.offset && offset < s.offset + s.length) found = s;
  return found;
}

function showValue(b: Buffer, s: FieldSpan): string {
  if (s.offset + s.length > b.length) {
    return s.offset >= b.length ? '(missing)' : `${b.subarray(s.offset).toString('hex')} (cut short)`;
  }
  return formatField(s.kind, b.subarray(s.offset, s.offset + s.length));
}

export function hexDiff(expected: Uint8Array, actual: Uint8Array): string {
  const exp = Buffer.from(expected);
  const act = Buffer.from(actual);
  if (exp.equals(act)) return `packets are identical (${exp.length} bytes)`;

  const len = Math.max(exp.length, act.length);
  const differs = (i: number): boolean => exp[i] !== act[i];
  const diffCount = Array.from({ length: len }, (_, i) => i).filter(differs).length;
  const lines: string[] = [
    `packets differ in ${diffCount} byte(s); expected ${exp.length} bytes, actual ${act.length} bytes`,
    `        ${Array.from({ length: ROW }, (_, i) => i.toString(16).padStart(2, ' ')).join(' ')}`,
  ];

  const rows = Math.ceil(len / ROW);
  const rowDiffers = Array.from({ length: rows }, (_, r) =>
    Array.from({ length: ROW }, (_, i) => r * ROW + i).some((i) => i < len && differs(i)),
  );
  let elided = false;
  for (let r = 0; r < rows; r++) {
    const near = rowDiffers[r] || rowDiffers[r - 1] === true || rowDiffers[r + 1] === true;
    if (!near) {
      if (!elided) lines.push('  ...');
      elided = true;
      continue;
    }
    elided = false;
    const start = r * ROW;
    if (!rowDiffers[r]) {
      lines.push(`${off(start)}    ${hexRow(exp, start).join(' ')}`.trimEnd());
      continue;
    }
    const carets = Array.from({ length: ROW }, (_, i) => (start + i < len && differs(start + i) ? '^^' : '  '));
    lines.push(`${off(start)}  - ${hexRow(exp, start).join(' ')}`.trimEnd());
    lines.push(`      + ${hexRow(act, start).join(' ')}`.trimEnd());
    lines.push(`        ${carets.join(' ')}`.trimEnd());
  }

  // Name the fields: offsets as the expected frame lays them out, the actual one past its end.
  const expSpans = frameFields(exp);
  const actSpans = frameFields(act);
  const named: string[] = [];
  let i = 0;
  while (i < len) {
    if (!differs(i)) {
      i++;
      continue;
    }
    const span = spanAt(i < exp.length ? expSpans : actSpans, i);
    if (span?.kind === 'bytes') {
      // A long run (payload, options) is shown only where it differs, with the position inside it.
      let j = i;
      while (j < span.offset + span.length && differs(j)) j++;
      const show = (b: Buffer): string => (i >= b.length ? '(missing)' : b.subarray(i, j).toString('hex'));
      named.push(`  0x${off(i)} ${span.name}[${i - span.offset}]: ${show(exp)} -> ${show(act)}`);
      i = j;
      continue;
    }
    if (span) {
      named.push(`  0x${off(span.offset)} ${span.name}: ${showValue(exp, span)} -> ${showValue(act, span)}`);
      i = span.offset + span.length;
      continue;
    }
    let j = i;
    while (j < len && differs(j) && spanAt(j < exp.length ? expSpans : actSpans, j) === undefined) j++;
    const show = (b: Buffer): string => (i >= b.length ? '(missing)' : b.subarray(i, j).toString('hex'));
    named.push(`  0x${off(i)} (${j - i} byte(s) outside any known header): ${show(exp)} -> ${show(act)}`);
    i = j;
  }
  if (named.length > 0) lines.push('fields (expected -> actual):', ...named);
  return lines.join('\n');
}
