/**
 * The optional native forwarding core (native/, C over Node-API, built by
 * scripts/build-native.js) and the choice of data plane: `dataPlane: auto | native | js`.
 * `native` takes the core and refuses to start without it; `auto` runs the JavaScript data
 * plane for now: the core only carries server-to-client bytes so far, and measured no cheaper
 * than JavaScript per transaction (bench/results/profile.md), so it is opt-in until it is. The core runs on Node's own event loop (no threads); what it
 * does is described in native/src/addon.c.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** An opaque handle owned by the core (a duplicated descriptor and its poll watcher). */
export type NativeHandle = { readonly __native: unique symbol };

/** What the core reports when it stops forwarding a server's answer (first callback argument). */
export const enum NativeEvent {
  /** the last expected ReadyForQuery went to the client */
  Done = 0,
  /** a frame the core does not handle: JavaScript takes it (it is the first leftover byte) */
  Handback = 1,
  /** the server closed the connection or reading it failed (errno in the last argument) */
  Closed = 2,
  /** writing to the client failed (it left) */
  ClientError = 3,
}

/**
 * Called when the core stops: `record` lists the completion frames it forwarded (their type
 * byte; a ReadyForQuery is followed by its status byte), `leftover` the bytes it read and did
 * not forward, from a frame boundary.
 */
export type NativeCallback = (
  event: NativeEvent,
  record: Buffer,
  leftover: Buffer | undefined,
  errno: number,
  /** bytes this engagement wrote to the client */
  sent: number,
) => void;

/** Route values of the core's decision cache. */
export const enum NativeRoute {
  Read = 1,
  Write = 2,
}

export interface NativeCore {
  clientOpen(fd: number): NativeHandle;
  /**
   * A client whose requests the core may read (clientArm): `onRequest` is offered a cached
   * simple Query with its route and returns true when it took it (engaged a backend for this
   * client, the core then writes the frame there; or runs it its own way); `onHandback` gets
   * the bytes the core read and did not take (from a frame boundary), `eof` when the client
   * closed or failed: Node reads the client again.
   */
  clientOpen(
    fd: number,
    maxFrameBytes: number,
    cacheSalt: number,
    onRequest: (route: NativeRoute, frame: Buffer) => boolean,
    onHandback: (bytes: Buffer | undefined, eof: boolean) => void,
  ): NativeHandle;
  /** The core reads the client's next request; false when it cannot (engaged, closed). */
  clientArm(client: NativeHandle): boolean;
  /** Stops an armed read; returns the bytes read and not handled. */
  clientDisarm(client: NativeHandle): Buffer | undefined;
  /** Puts a decision for the text of this Query frame; false when the text has no fingerprint. */
  cachePut(queryFrame: Buffer, route: NativeRoute, cacheSalt: number): boolean;
  /** The fingerprint of a Query frame's text (literals stand for any value), or undefined. */
  fingerprint(queryFrame: Buffer): string | undefined;
  clientClose(client: NativeHandle): void;
  backendOpen(fd: number, maxFrameBytes: number, callback: NativeCallback): NativeHandle;
  /** Stops and frees; returns the record and bytes sent of an engagement it cut short. */
  backendClose(backend: NativeHandle): [Buffer, number] | undefined;
  engage(backend: NativeHandle, client: NativeHandle, expectedReady: number): boolean;
  expectMore(backend: NativeHandle, count: number): boolean;
  /** [engagements, bytes forwarded, requests read and sent natively, armed reads handed back] */
  stats(): [number, number, number, number];
}

export type DataPlaneSetting = 'auto' | 'native' | 'js';

/** The data plane an instance runs, and why. */
export interface DataPlane {
  kind: 'native' | 'js';
  /** the core when kind is native */
  core: NativeCore | null;
  /** why the JavaScript data plane runs (null when native) */
  reason: string | null;
}

let loaded: { core: NativeCore | null; error: string | null } | null = null;

/**
 * The addon's path: native/build/Release under the package root (dist/src/util is three levels
 * down), or RWSPLIT_NATIVE_PATH (the AddressSanitizer build, scripts/build-native.js).
 */
export function nativeCorePath(): string {
  const chosen = process.env['RWSPLIT_NATIVE_PATH'];
  if (chosen) return path.resolve(chosen);
  const here = path.dirname(fileURLToPath(import.meta.url));
  return path.resolve(here, '..', '..', '..', 'native', 'build', 'Release', 'rwsplit_native.node');
}

/** Loads the core once per process; null with the reason when it is not built or does not load. */
export function loadNativeCore(): { core: NativeCore | null; error: string | null } {
  if (loaded) return loaded;
  const file = nativeCorePath();
  if (!existsSync(file)) {
    loaded = { core: null, error: 'the native core is not built (node scripts/build-native.js)' };
    return loaded;
  }
  try {
    const core = createRequire(import.meta.url)(file) as NativeCore;
    loaded = { core, error: null };
    // The AddressSanitizer build needs its runtime preloaded into this process; the programs it
    // starts (initdb and postgres in the tests) must not get it.
    if (process.env['RWSPLIT_NATIVE_PATH'] && /libasan/.test(process.env['LD_PRELOAD'] ?? ''))
      delete process.env['LD_PRELOAD'];
  } catch (err) {
    loaded = { core: null, error: `the native core did not load: ${(err as Error).message}` };
  }
  return loaded;
}

/** Resolves the `dataPlane` setting; throws (naming the setting) when `native` is asked and missing. */
export function resolveDataPlane(setting: DataPlaneSetting): DataPlane {
  if (setting === 'js') return { kind: 'js', core: null, reason: 'dataPlane: js' };
  if (setting === 'auto')
    return {
      kind: 'js',
      core: null,
      reason: 'dataPlane: auto (the native core is opt-in: dataPlane: native)',
    };
  const { core, error } = loadNativeCore();
  if (core) return { kind: 'native', core, reason: null };
  throw new Error(
    `dataPlane is native but ${error}; build it (node scripts/build-native.js, needs a C compiler) or set dataPlane: auto`,
  );
}
