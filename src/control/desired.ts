/**
 * Desired state = config x health x neighbours. The one function that decides which backends
 * the data path may use; the reconcile loop hands its result to the applier.
 */
import type { DesiredService } from '../dataplane/apply.js';
import type { Backend, Config, Service } from '../config/types.js';

/** Why a configured backend is not in its ring (or null when it is usable). */
export type Exclusion = 'down' | 'unknown' | 'no-mac' | 'drain' | null;

export interface BackendVerdict {
  usable: boolean;
  why: Exclusion;
}

export function backendKey(svc: Pick<Service, 'name'>, b: Pick<Backend, 'address' | 'port'>): string {
  return `${svc.name}|${b.address}|${b.port ?? ''}`;
}

export interface DesiredInputs {
  /** health state per backendKey(); absent = no check configured */
  health(key: string): 'up' | 'down' | 'unknown' | undefined;
  /** backends that were in a ring when the daemon adopted the maps: unknown counts as up for them */
  adoptedUp: ReadonlySet<string>;
  /** resolved MACs by address (l2dsr backends without a configured mac) */
  macs: ReadonlyMap<string, string>;
}

export function judge(svc: Service, b: Backend, inp: DesiredInputs): BackendVerdict {
  const key = backendKey(svc, b);
  if (svc.mode === 'l2dsr' && !b.mac && !inp.macs.has(b.address)) return { usable: false, why: 'no-mac' };
  const h = b.healthCheck.type === 'none' ? 'up' : inp.health(key) ?? 'unknown';
  if (h === 'down') return { usable: false, why: 'down' };
  if (h === 'unknown' && !inp.adoptedUp.has(key)) return { usable: false, why: 'unknown' };
  if (b.weight === 0) return { usable: false, why: 'drain' };
  return { usable: true, why: null };
}

export function desiredServices(cfg: Config, inp: DesiredInputs): DesiredService[] {
  return cfg.services.map((svc) => ({
    vip: svc.vip,
    port: svc.port,
    proto: svc.proto,
    mode: svc.mode,
    hashSrcOnly: svc.hashSourceOnly,
    ...(svc.fullNat ? { fullNat: true } : {}),
    onAllDown: svc.onAllDown,
    backends: svc.backends.map((b) => {
      const v = judge(svc, b, inp);
      const mac = b.mac ?? inp.macs.get(b.address);
      return {
        address: b.address,
        weight: b.weight,
        ...(b.port !== undefined ? { port: b.port } : {}),
        ...(mac ? { mac } : {}),
        // drain keeps the backend's entry so established flows continue; weight 0 keeps it out of the ring
        healthy: v.usable || v.why === 'drain',
      };
    }),
  }));
}
