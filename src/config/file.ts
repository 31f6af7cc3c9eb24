/**
 * The config file as the daemon owns it. lbctl's changes are made on the parsed YAML document
 * (not on the normalized Config) so the operator's comments, key order, quoting and blank lines
 * survive; each edit returns a new, fully validated ConfigFile and only save() touches the disk.
 */
import {
  closeSync,
  fchmodSync,
  fchownSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  realpathSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
  type Stats,
} from 'node:fs';
import { isIP } from 'node:net';
import { dirname } from 'node:path';
import { Document, isMap, isScalar, isSeq, parseDocument, type Node, type YAMLMap, type YAMLSeq } from 'yaml';
import { LbError } from '../errors.js';
import { checkIp } from './addr.js';
import { detectFormat, parseAs, parseText, readConfigText, stripBom, type Format } from './parse.js';
import { isPlainObject } from './schema.js';
import { serviceKeyString, type Backend, type Config, type Proto, type Service } from './types.js';
import { ConfigError } from './violations.js';

function configError(message: string, hint?: string): LbError {
  return new LbError('ERR_LB_CONFIG', message, hint === undefined ? {} : { hint });
}

function canonical(address: string): string | undefined {
  const r = checkIp(address);
  return 'value' in r ? r.value.address : undefined;
}

/** `VIP:PORT/PROTO`, `[VIP6]:PORT/PROTO`; the proto may be left out for tcp, as ipvsadm's -t does. */
export function parseServiceKey(key: string): { vip: string; port: number; proto: Proto } | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:[\]/]+)):(\d{1,5})(?:\/(tcp|udp))?$/i.exec(key.trim());
  if (m === null) return undefined;
  const vip = canonical(m[1] ?? m[2] ?? '');
  if (vip === undefined) return undefined;
  return { vip, port: Number(m[3]), proto: (m[4]?.toLowerCase() ?? 'tcp') as Proto };
}

/** The service `key` names: its name, or its `VIP:PORT/PROTO`. ERR_LB_CONFIG listing the known ones if none. */
export function findService(config: Config, key: string): { index: number; service: Service } {
  let index = config.services.findIndex((s) => s.name === key);
  if (index < 0) {
    const k = parseServiceKey(key);
    if (k !== undefined) index = config.services.findIndex((s) => serviceKeyString(s) === serviceKeyString(k));
  }
  const service = config.services[index];
  if (service !== undefined) return { index, service };
  const known = config.services.map((s) => (s.name === serviceKeyString(s) ? s.name : `${s.name} (${serviceKeyString(s)})`));
  throw configError(
    `no service ${JSON.stringify(key)}; known: ${known.length > 0 ? known.join(', ') : '(none)'}`,
    'name a service by its name or by VIP:PORT/PROTO ([VIP]:PORT/PROTO for IPv6)',
  );
}

/**
 * The backend `address` names in `service`: an address, or `ADDR:PORT` / `[ADDR6]:PORT` where a
 * nat service has one address on several ports.
 */
export function findBackend(service: Service, address: string): { index: number; backend: Backend } {
  const sel = address.trim();
  let addr: string | undefined;
  let port: number | undefined;
  if (isIP(sel) !== 0) {
    addr = canonical(sel);
  } else {
    const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(sel);
    if (m !== null) {
      addr = canonical(m[1] ?? m[2] ?? '');
      port = Number(m[3]);
    }
  }
  const label = (b: Backend): string => {
    const p = b.port ?? service.port;
    return service.mode !== 'nat' ? b.address : b.address.includes(':') ? `[${b.address}]:${p}` : `${b.address}:${p}`;
  };
  const matches = service.backends
    .map((backend, index) => ({ backend, index }))
    .filter(({ backend: b }) => b.address === addr && (port === undefined || (b.port ?? service.port) === port));
  const [only] = matches;
  if (only !== undefined && matches.length === 1) return only;
  if (matches.length > 1) {
    const which = matches.map((m) => label(m.backend)).join(', ');
    throw configError(`${address} is ambiguous in service ${service.name}: ${which}`, 'add the port');
  }
  const known = service.backends.length > 0 ? service.backends.map(label).join(', ') : '(none)';
  throw configError(`service ${service.name} has no backend ${JSON.stringify(address)}; its backends: ${known}`);
}

/** Indentation the file already uses, so an edit does not re-indent every line of it. */
function detectStyle(text: string): { indent: number; indentSeq: boolean } {
  const lines = text.split('\n').filter((l) => l.trim() !== '' && !l.trimStart().startsWith('#'));
  let indent = 0;
  let indentSeq = true;
  let seqSeen = false;
  lines.forEach((line, i) => {
    const own = line.length - line.trimStart().length;
    const prev = lines[i - 1];
    if (prev === undefined) return;
    const parent = prev.length - prev.trimStart().length;
    if (indent === 0 && own > parent && !line.trimStart().startsWith('- ')) indent = own - parent;
    if (!seqSeen && line.trimStart().startsWith('- ') && /:\s*(#.*)?$/.test(prev) && !prev.trimStart().startsWith('- ')) {
      seqSeen = true;
      indentSeq = own > parent;
    }
  });
  return { indent: indent > 0 && indent <= 8 ? indent : 2, indentSeq };
}

function render(doc: Document, format: Format, original: string): string {
  if (format === 'json') return `${JSON.stringify(doc.toJS(), null, 2)}\n`;
  return doc.toString({ ...detectStyle(original), flowCollectionPadding: false, lineWidth: 0 });
}

/** What a node said about itself (comments, a blank line before it) carried to its replacement. */
function replaceNode(doc: Document, map: YAMLMap, key: string, value: unknown): void {
  const old = map.get(key, true) as Node | undefined;
  const node = doc.createNode(value) as Node;
  if (old !== undefined) {
    if (old.comment !== undefined) node.comment = old.comment;
    if (old.commentBefore !== undefined) node.commentBefore = old.commentBefore;
    if (old.spaceBefore !== undefined) node.spaceBefore = old.spaceBefore;
  }
  map.set(key, node);
}

/**
 * RFC 7386 merge patch onto a YAML mapping: null deletes a key, a mapping merges into a mapping,
 * anything else replaces. A scalar that keeps its kind is updated in place, keeping its comment.
 */
function mergePatch(doc: Document, map: YAMLMap, patch: Record<string, unknown>): void {
  for (const [key, value] of Object.entries(patch)) {
    if (value === undefined) continue;
    if (value === null) {
      map.delete(key);
      continue;
    }
    const cur = map.get(key, true);
    if (isPlainObject(value) && isMap(cur)) mergePatch(doc, cur, value);
    else if (isScalar(cur) && typeof cur.value === typeof value && typeof value !== 'object') cur.value = value;
    else replaceNode(doc, map, key, value);
  }
}

function asMapping(v: unknown, what: string): Record<string, unknown> {
  if (isPlainObject(v)) return v;
  throw configError(`${what} must be a mapping (an object), got ${Array.isArray(v) ? 'a list' : typeof v}`);
}

/** Appends to a block list, turning an empty flow list (`[]`) into a block one so entries read well. */
function appendTo(doc: Document, parent: YAMLMap | Document, key: string, item: unknown): void {
  const cur = parent.get(key, true);
  if (isSeq(cur)) {
    if (cur.items.length === 0) cur.flow = false;
    cur.add(doc.createNode(item));
    return;
  }
  const seq = doc.createNode([item]) as YAMLSeq;
  seq.flow = false;
  if (parent instanceof Document) parent.set(key, seq);
  else replaceNode(doc, parent, key, seq);
}

export class ConfigFile {
  readonly path: string;
  /** the file's text: what save() writes */
  readonly text: string;
  readonly config: Config;
  /** JSON files stay JSON (pretty, 2 spaces); YAML files keep their comments */
  readonly format: Format;
  /** the text last read from or written to disk: save() refuses to overwrite anything else */
  #onDisk: string;

  private constructor(path: string, text: string, config: Config, format: Format, onDisk: string) {
    this.path = path;
    this.text = text;
    this.config = config;
    this.format = format;
    this.#onDisk = onDisk;
  }

  /** Reads and validates the file; ERR_LB_CONFIG when missing, unreadable or invalid. */
  static load(path: string): ConfigFile {
    const text = readConfigText(path);
    const format = detectFormat(text, path);
    return new ConfigFile(path, text, parseAs(text, format, path), format, text);
  }

  private document(): Document {
    if (this.format === 'json') return new Document(JSON.parse(stripBom(this.text)));
    return parseDocument(stripBom(this.text));
  }

  private edit(fn: (doc: Document) => void): ConfigFile {
    const doc = this.document();
    fn(doc);
    const text = render(doc, this.format, this.text);
    return new ConfigFile(this.path, text, parseAs(text, this.format, `${this.path} (edited)`), this.format, this.#onDisk);
  }

  private serviceNode(doc: Document, key: string): YAMLMap {
    const { index } = findService(this.config, key);
    const node = doc.getIn(['services', index], true);
    if (isMap(node)) return node;
    throw configError(`services[${index}] is not a plain mapping in the file (a YAML alias?)`, 'edit the file by hand');
  }

  private backendNode(doc: Document, serviceKey: string, address: string): { seq: YAMLSeq; index: number } {
    const { service } = findService(this.config, serviceKey);
    const { index } = findBackend(service, address);
    const seq = this.serviceNode(doc, serviceKey).get('backends', true);
    if (isSeq(seq)) return { seq, index };
    throw configError(`the backends of ${service.name} are not a plain list in the file`, 'edit the file by hand');
  }

  /** Appends a service, written as in the file (`{vip, port, mode, backends: [...]}`). */
  addService(raw: object): ConfigFile {
    const entry = asMapping(raw, 'a service');
    return this.edit((doc) => appendTo(doc, doc, 'services', entry));
  }

  /** Merge-patches a service (RFC 7386: null removes a key, mappings merge, lists are replaced). */
  setService(key: string, patch: object): ConfigFile {
    const p = asMapping(patch, 'a service patch');
    return this.edit((doc) => mergePatch(doc, this.serviceNode(doc, key), p));
  }

  deleteService(key: string): ConfigFile {
    const { index } = findService(this.config, key);
    return this.edit((doc) => {
      const seq = doc.get('services', true);
      if (isSeq(seq)) seq.delete(index);
    });
  }

  addBackend(serviceKey: string, raw: object): ConfigFile {
    const entry = asMapping(raw, 'a backend');
    return this.edit((doc) => appendTo(doc, this.serviceNode(doc, serviceKey), 'backends', entry));
  }

  /** Merge-patches one backend, e.g. `{ weight: 0 }` to drain it. */
  setBackend(serviceKey: string, address: string, patch: object): ConfigFile {
    const p = asMapping(patch, 'a backend patch');
    return this.edit((doc) => {
      const { seq, index } = this.backendNode(doc, serviceKey, address);
      const node = seq.get(index, true);
      if (!isMap(node)) throw configError(`backend ${address} is not a plain mapping in the file`, 'edit the file by hand');
      mergePatch(doc, node, p);
    });
  }

  deleteBackend(serviceKey: string, address: string): ConfigFile {
    return this.edit((doc) => {
      const { seq, index } = this.backendNode(doc, serviceKey, address);
      seq.delete(index);
    });
  }

  /**
   * A whole new text (`lbctl apply -f`), YAML or JSON by its content. Kept as given, except that a
   * `.json` file stays JSON: YAML given for it is converted.
   */
  replaceWith(text: string): ConfigFile {
    const given = detectFormat(text);
    const source = `${this.path} (new text)`;
    if (/\.json$/i.test(this.path) && given === 'yaml') {
      const r = parseText(text, 'yaml');
      if ('violations' in r) throw new ConfigError(source, r.violations);
      const json = `${JSON.stringify(r.value, null, 2)}\n`;
      return new ConfigFile(this.path, json, parseAs(json, 'json', source), 'json', this.#onDisk);
    }
    return new ConfigFile(this.path, text, parseAs(text, given, source), given, this.#onDisk);
  }

  /**
   * Writes the text atomically: a temporary file beside the target, fsync, rename over it, fsync
   * the directory. The original's mode and owner are kept; a symlinked config is written through
   * the link. Refuses (ERR_LB_CONFIG) when the file changed on disk since it was read, rather than
   * silently dropping the operator's hand edit.
   */
  save(): void {
    let target = this.path;
    let before: Stats | undefined;
    try {
      target = realpathSync(this.path);
      before = statSync(target);
    } catch {
      // No file yet: create it (and its directory).
    }
    if (before !== undefined) {
      const disk = readFileSync(target, 'utf8');
      if (disk !== this.#onDisk && disk !== this.text) {
        throw configError(
          `config ${this.path} changed on disk since it was read`,
          'have the daemon reload it first (SIGHUP), then repeat the change',
        );
      }
    }
    const tmp = `${target}.tmp-${process.pid}`;
    const mode = before === undefined ? 0o644 : before.mode & 0o7777;
    let fd: number | undefined;
    try {
      mkdirSync(dirname(target), { recursive: true });
      rmSync(tmp, { force: true });
      fd = openSync(tmp, 'wx', mode);
      fchmodSync(fd, mode); // open() applied the umask
      if (before !== undefined) {
        try {
          fchownSync(fd, before.uid, before.gid);
        } catch {
          // Only root may give a file away; a non-root owner keeps its own file anyway.
        }
      }
      writeFileSync(fd, this.text);
      fsyncSync(fd);
      closeSync(fd);
      fd = undefined;
      renameSync(tmp, target);
      const dirFd = openSync(dirname(target), 'r');
      try {
        fsyncSync(dirFd);
      } finally {
        closeSync(dirFd);
      }
    } catch (e) {
      if (fd !== undefined) closeSync(fd);
      rmSync(tmp, { force: true });
      const errno = (e as NodeJS.ErrnoException).code;
      throw new LbError('ERR_LB_CONFIG', `config ${this.path}: cannot write it: ${(e as Error).message}`, {
        cause: e,
        hint: 'check that its directory is writable and the disk not full',
        ...(errno === undefined ? {} : { errno }),
      });
    }
    this.#onDisk = this.text;
  }
}
