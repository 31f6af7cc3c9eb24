/**
 * File text to plain data (YAML or JSON), syntax errors as violations with line and column, then
 * to the frozen, normalized Config. Everything here throws ConfigError, listing all it found.
 */
import { readFileSync } from 'node:fs';
import { LineCounter, parseDocument } from 'yaml';
import { LbError } from '../errors.js';
import type { Config } from './types.js';
import { validate } from './validate.js';
import { ConfigError, type Violation } from './violations.js';

export type Format = 'yaml' | 'json';

export function stripBom(text: string): string {
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

/** JSON by the file's extension, or when the first thing in it is `{`; YAML otherwise. */
export function detectFormat(text: string, source?: string): Format {
  if (source !== undefined && /\.json$/i.test(source)) return 'json';
  return stripBom(text).trimStart().startsWith('{') ? 'json' : 'yaml';
}

function linePos(text: string, offset: number): { line: number; col: number } {
  const before = text.slice(0, Math.max(0, offset));
  const line = before.split('\n').length;
  return { line, col: offset - before.lastIndexOf('\n') };
}

const EMPTY: Violation = {
  path: '',
  message: 'the file is empty',
  hint: 'a config needs at least node.interfaces; docs/config.md has a minimal example',
};

/** The file's data, or the reasons it is not readable as `format`. */
export function parseText(text: string, format: Format): { value: unknown } | { violations: Violation[] } {
  const body = stripBom(text);
  if (body.trim() === '') return { violations: [EMPTY] };

  if (format === 'json') {
    let value: unknown;
    try {
      value = JSON.parse(body);
    } catch (e) {
      const msg = (e as Error).message;
      const at = / in JSON at position (\d+)/.exec(msg);
      const message = `JSON syntax error: ${msg.replace(/ in JSON at position \d+.*$/, '')}`;
      if (at?.[1] === undefined) return { violations: [{ path: '', message }] };
      return { violations: [{ path: '', message, ...linePos(body, Number(at[1])) }] };
    }
    // JSON.parse keeps the last of two equal keys without a word; the YAML parser reports them.
    const dupes = yamlErrors(body)
      .filter((v) => v.message.startsWith('Map keys must be unique'))
      .map((v) => ({ ...v, message: 'JSON: the same key twice in one object' }));
    return dupes.length > 0 ? { violations: dupes } : { value };
  }

  const lineCounter = new LineCounter();
  const doc = parseDocument(body, { lineCounter, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const violations = doc.errors.map((e) => ({
      path: '',
      message: `YAML syntax error: ${e.message}`,
      ...lineCounter.linePos(e.pos[0]),
    }));
    return { violations };
  }
  if (doc.contents === null) return { violations: [EMPTY] };
  try {
    return { value: doc.toJS({ maxAliasCount: 100 }) };
  } catch (e) {
    return { violations: [{ path: '', message: `YAML: ${(e as Error).message}` }] };
  }
}

function yamlErrors(text: string): Violation[] {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  return doc.errors.map((e) => ({ path: '', message: e.message, ...lineCounter.linePos(e.pos[0]) }));
}

/** Freezes every object and array below `v`. Buffers are left alone: typed arrays cannot be frozen. */
export function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null && !ArrayBuffer.isView(v) && !Object.isFrozen(v)) {
    for (const x of Object.values(v)) deepFreeze(x);
    Object.freeze(v);
  }
  return v;
}

/** Plain data (already parsed) to the frozen Config. */
export function configFromValue(value: unknown, source?: string): Config {
  const r = validate(value);
  if (r.config === undefined) throw new ConfigError(source, r.violations);
  return deepFreeze(r.config);
}

export function parseAs(text: string, format: Format, source?: string): Config {
  const r = parseText(text, format);
  if ('violations' in r) throw new ConfigError(source, r.violations);
  return configFromValue(r.value, source);
}

/**
 * Validates a whole config file's text and returns the normalized, deeply frozen Config. `source`
 * names the file in the error (and a `.json` name makes it JSON). Throws ConfigError
 * (ERR_LB_CONFIG) listing every problem.
 */
export function parseConfig(text: string, source?: string): Config {
  return parseAs(text, detectFormat(text, source), source);
}

/** The file's text, or ERR_LB_CONFIG saying why it cannot be read. */
export function readConfigText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    const errno = (e as NodeJS.ErrnoException).code;
    const why: Record<string, [string, string]> = {
      ENOENT: ['no such file', 'create it (docs/config.md has a minimal example) or give the path of an existing one'],
      EACCES: ['permission denied', 'run as root, or make the file readable'],
      EISDIR: ['is a directory', 'give the path of the config file itself'],
    };
    const [what, hint] = why[errno ?? ''] ?? [`cannot read it: ${(e as Error).message}`, 'check the path'];
    throw new LbError('ERR_LB_CONFIG', `config ${path}: ${what}`, { hint, cause: e, ...(errno === undefined ? {} : { errno }) });
  }
}

/** Reads and validates a config file (see parseConfig). */
export function loadConfigFile(path: string): Config {
  return parseConfig(readConfigText(path), path);
}
