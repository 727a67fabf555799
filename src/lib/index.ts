/** The package's main entry: the in-process library (`rwsplit/pg`; docs/LIBRARY.md). */
export * from './pg/index.js';
