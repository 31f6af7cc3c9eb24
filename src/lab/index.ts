/** The network-namespace lab: topology as data, up/down/status, command helpers, client traffic. */
export * from './topology.js';
export * from './exec.js';
export * from './linkup.js';
export * from './lab.js';
export * from './client.js';
export * from './balancer.js';
export * from './udp.js';
