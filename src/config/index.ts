export { parseConfig, loadConfigFile } from './parse.js';
export type { Format } from './parse.js';
export { ConfigFile, findService, findBackend, parseServiceKey } from './file.js';
export { ConfigError, isConfigError, formatViolation } from './violations.js';
export type { Violation } from './violations.js';
export { HEALTH_DEFAULTS, defaultHealthType } from './health.js';
export { NODE_DEFAULTS } from './schema.js';
export { formatDuration, parseDuration } from './durations.js';
export { serviceKeyString } from './types.js';
export type {
  Backend,
  Config,
  HealthCheck,
  HealthType,
  Mode,
  NodeSettings,
  Proto,
  Service,
  StatusRange,
  XdpMode,
} from './types.js';
