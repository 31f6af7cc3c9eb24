/** Backend (real server) preparation for DSR, on this machine or on many hosts over SSH. */
export * from './quote.js';
export * from './hostspec.js';
export * from './knownhosts.js';
export * from './script.js';
export * from './remote.js';
export * from './run.js';
