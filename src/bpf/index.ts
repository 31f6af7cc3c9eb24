/**
 * src/bpf: a small typed binding to libbpf 1.1 through koffi. Open, configure and load objects,
 * read and write maps, pin, attach XDP, test-run programs, read BTF. Everything it throws is an
 * LbError with an ERR_LB_BPF_* code, the errno name and, where it helps, a hint.
 */
export { BpfObject, verifierSummary } from './object.js';
export type { OpenOptions } from './object.js';
export { BpfMap, MapType, UpdateFlag, mapInfoByFd } from './map.js';
export type { MapInfo } from './map.js';
export { BpfProgram, progInfoByFd } from './program.js';
export type { ProgInfo } from './program.js';
export { Btf, BtfKind } from './btf.js';
export type { BtfMember, StructLayout, DatasecVar, BtfTypeRecord } from './btf.js';
export { attachXdp, detachXdp, queryXdp, ifIndex, inNetns, XdpFlags } from './xdp.js';
export type { AttachOptions, XdpMode, XdpQuery } from './xdp.js';
export { testRun, TestRunFlags, XdpAction } from './testrun.js';
export type { TestRunOptions, TestRunResult } from './testrun.js';
export { DEFAULT_PIN_DIR, ensurePinDir, assertBpffs, pinFd, unpin, removePinDir } from './pin.js';
export { libbpfErr, errnoName, errnoNumber } from './errors.js';
export { possibleCpus, setLibbpfLogger } from './libbpf.js';
export type { LibbpfLevel, LibbpfLogger } from './libbpf.js';
