#!/usr/bin/env node
/** lbctl's entry point; the command tree is in program.ts. */
import { main, report } from './program.js';

main(process.argv).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.exitCode = report(e);
  },
);
