/**
 * The one place where a lab command line tool (check.js, machine-lb.js, vagrant-topology.js) turns
 * its arguments into options and its outcome into output and an exit status: 0 ok, 1 runtime
 * failure, 2 usage or config error.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { LbError, isLbError } from '../errors.js';

type Options = NonNullable<ParseArgsConfig['options']>;

/** Parse `argv` strictly; `-h/--help` prints `usage` and exits 0; anything wrong is a usage error. */
export function parseCli<O extends Options>(argv: string[], usage: string, options: O) {
  if (argv.includes('-h') || argv.includes('--help')) {
    process.stdout.write(usage);
    process.exit(0);
  }
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals: false }).values;
  } catch (e) {
    throw new LbError('ERR_LB_USAGE', (e as Error).message, { hint: 'see --help' });
  }
}

/** A positive integer option, or a usage error. */
export function intOption(name: string, value: string | undefined, dflt: number): number {
  if (value === undefined) return dflt;
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < 1) {
    throw new LbError('ERR_LB_USAGE', `--${name} ${value}: not a positive integer`);
  }
  return n;
}

/** One of `allowed`, or a usage error. */
export function choiceOption<T extends string>(name: string, value: string | undefined, allowed: readonly T[], dflt: T): T {
  if (value === undefined) return dflt;
  if (!(allowed as readonly string[]).includes(value)) {
    throw new LbError('ERR_LB_USAGE', `--${name} ${value}: want one of ${allowed.join(', ')}`);
  }
  return value as T;
}

export function runMain(name: string, main: () => Promise<number>): void {
  main().then(
    (code) => process.exit(code),
    (e: unknown) => {
      if (isLbError(e)) {
        process.stderr.write(`${name}: error: ${e.message}\n`);
        if (e.detail) process.stderr.write(`${e.detail.replace(/^/gm, '  ')}\n`);
        if (e.hint) process.stderr.write(`${name}: hint: ${e.hint}\n`);
        process.exit(e.exitCode);
      }
      process.stderr.write(`${name}: error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
      process.exit(1);
    },
  );
}
