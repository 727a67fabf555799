/**
 * PostgreSQL wire-protocol codec: frame splitting, the few decoders routing needs, and the
 * encoders for frames the proxy originates. Depends on nothing but Node itself.
 */
export * from './errors.js';
export * from './message-types.js';
export * from './frame-reader.js';
export * from './decode.js';
export * from './encode.js';
