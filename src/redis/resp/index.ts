/**
 * Redis RESP2/RESP3 codec: the client command splitter, the server reply splitter, a full
 * decoder for the few replies the proxy reads, and the encoders for what the proxy originates.
 * Depends on nothing but Node itself.
 */
export * from './errors.js';
export * from './resp-types.js';
export { splitInlineArgs } from './inline-args.js';
export * from './command-reader.js';
export * from './reply-reader.js';
export * from './parse-reply.js';
export * from './encode.js';
