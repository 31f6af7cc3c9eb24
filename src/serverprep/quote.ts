/**
 * The one way a string reaches a remote shell. sshd hands the command to the user's login shell as
 * `$SHELL -c STRING`, so every word we send is re-parsed there: each one goes in single quotes, where
 * a POSIX shell (sh, dash, bash, zsh, ksh) expands nothing at all. The only character that cannot
 * appear inside single quotes is the single quote itself, which becomes `'\''` (close, an escaped
 * quote, reopen). csh-family login shells treat newlines and `!` differently: the arguments we build
 * never contain either (see args.ts), and the root account's shell is POSIX on every distribution
 * we target.
 */
import { LbError } from '../errors.js';

/** One shell word, single-quoted. NUL cannot be passed in an argv at all, so it is refused. */
export function shQuote(word: string): string {
  if (word.includes('\0')) {
    throw new LbError('ERR_LB_USAGE', 'a shell argument contains a NUL byte');
  }
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/** A whole command line: every word quoted, joined by single spaces. */
export function shJoin(argv: readonly string[]): string {
  return argv.map(shQuote).join(' ');
}
