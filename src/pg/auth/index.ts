/** PostgreSQL authentication crypto: MD5 and SCRAM-SHA-256 message contents (the framing lives elsewhere). */
export { md5PasswordResponse } from './md5.js';
export {
  DEFAULT_ITERATIONS,
  SCRAM_MECHANISM,
  ScramError,
  ScramVerifierError,
  formatScramVerifier,
  makeScramVerifier,
  parseScramVerifier,
  saslPrep,
} from './scram-common.js';
export type { ScramKeys, ScramVerifier } from './scram-common.js';
export { ScramClient } from './scram-client.js';
export { ScramServer } from './scram-server.js';
