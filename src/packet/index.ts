/** Test packets: build, parse, checksum, diff. See build.ts for the spec format. */
export * from './addr.js';
export * from './build.js';
export * from './checksum.js';
export * from './hexdiff.js';
export * from './parse.js';
