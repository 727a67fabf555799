/**
 * One run of one scenario: start a fresh stack, load it, inject the fault, keep the load
 * going, stop it, read the final state back from the surviving primary and compute the
 * figures. Every process started is stopped, whatever happens.
 */
import { setTimeout as delay } from 'node:timers/promises';

import { Redis } from 'ioredis';

import { analyze, Recorder, type RunFigures, type RunWindow } from './checker.js';
import { preparePgSchema, readPgState, startPgLoad } from './pg-load.js';
import { readRedisState, startRedisLoad } from './redis-load.js';
import type { Scenario, ScenarioTiming } from './scenarios.js';
import type { RunningLoad } from './session-loop.js';
import {
  endState,
  startPgChaosStack,
  startRedisChaosStack,
  type ChaosStack,
  type EndState,
} from './stacks.js';

/** How many sessions of each kind, and their pacing. */
export interface LoadShape {
  writers: number;
  rywSessions: number;
  readers: number;
  /** pause between a session's operations */
  pauseMs: number;
}

/** Everything that shapes a run (recorded in the report). */
export interface RunSettings {
  timing: ScenarioTiming;
  load: LoadShape;
  /** the PostgreSQL launcher's replication mode ('sync': ANY 1 of the two replicas) */
  pgReplication: 'sync' | 'async';
  /** Redis zero-loss mode: `redis.waitReplicas: { numReplicas: 1 }` */
  redisWaitReplicas: boolean;
}

/** A topology event of rwsplit's event log, its time relative to the fault. */
export interface RunEvent {
  atMs: number;
  node: string;
  type: string;
  detail: string;
}

/** The outcome of one run; `error` set when the run itself failed (no figures then). */
export interface RunResult {
  scenario: string;
  engine: 'postgres' | 'redis';
  run: number;
  startedAt: string;
  victim: string | null;
  initialPrimary: string | null;
  /** the node writes go to at the end, when it is not the initial primary */
  promoted: string | null;
  window: RunWindow | null;
  figures: RunFigures | null;
  end: EndState | null;
  events: RunEvent[];
  error: string | null;
}

const CLIENT_TIMEOUT_MS = 15_000;
const RECONNECT_DELAY_MS = 100;
const END_STATE_TIMEOUT_MS = 15_000;
const EVENT_TYPES = new Set([
  'down',
  'up',
  'lagging',
  'caught-up',
  'role-change',
  'fenced',
  'unfenced',
  'failover-start',
  'failover-end',
  'writes-held',
  'writes-released',
]);

/** Runs one scenario once; a failure is returned in `error`, never thrown. */
export async function runScenario(
  scenario: Scenario,
  settings: RunSettings,
  run: number,
  progress: (line: string) => void = () => undefined,
): Promise<RunResult> {
  const result: RunResult = {
    scenario: scenario.name,
    engine: scenario.engine,
    run,
    startedAt: new Date().toISOString(),
    victim: null,
    initialPrimary: null,
    promoted: null,
    window: null,
    figures: null,
    end: null,
    events: [],
    error: null,
  };
  let stack: ChaosStack | undefined;
  try {
    progress(`${scenario.name} #${run}: starting the cluster and rwsplit`);
    stack =
      scenario.engine === 'postgres'
        ? await startPgChaosStack(settings.pgReplication)
        : await startRedisChaosStack(settings.redisWaitReplicas);
    await execute(scenario, settings, stack, result, progress);
  } catch (err) {
    result.error = err instanceof Error ? err.message : String(err);
    if (stack) result.error += `\nrwsplit log tail:\n${stack.proxy.logTail(20)}`;
  } finally {
    await stack?.stop();
  }
  return result;
}

async function execute(
  scenario: Scenario,
  settings: RunSettings,
  stack: ChaosStack,
  result: RunResult,
  progress: (line: string) => void,
): Promise<void> {
  const { timing } = settings;
  result.initialPrimary = await prepareData(stack, settings.load);
  const rec = new Recorder();
  const load = startLoad(stack, settings.load, rec);
  const phases = await runPhases(scenario, stack, timing, rec, result, progress).finally(() => load.stop());
  result.window = phases.window;
  progress(`${scenario.name} #${result.run}: checking`);
  result.end = await endState(stack, END_STATE_TIMEOUT_MS);
  const final = await readFinal(stack, result.end, rec);
  result.figures = analyze(rec.snapshot(), phases.window, final);
  const p = result.end.primary?.id ?? null;
  result.promoted = p !== null && p !== result.initialPrimary ? p : null;
  result.events = await proxyEvents(stack, phases.faultWallClock);
}

/** Warm-up, fault, the load after it; the load runs throughout. */
async function runPhases(
  scenario: Scenario,
  stack: ChaosStack,
  timing: ScenarioTiming,
  rec: Recorder,
  result: RunResult,
  progress: (line: string) => void,
): Promise<{ window: RunWindow; faultWallClock: number }> {
  const loadStart = rec.now();
  await delay(timing.warmupMs);
  progress(`${scenario.name} #${result.run}: fault`);
  const faultAt = rec.now();
  const faultWallClock = Date.now();
  result.victim = await scenario.inject(stack, timing);
  await delay(timing.afterMs);
  return { window: { loadStart, faultAt, loadEnd: rec.now() }, faultWallClock };
}

/** Creates the tables or keys the load uses, waits until the replicas have them; returns the primary's id. */
async function prepareData(stack: ChaosStack, load: LoadShape): Promise<string> {
  if (stack.engine === 'postgres') {
    await preparePgSchema(stack.cluster.primary.port, load.rywSessions);
    await stack.cluster.waitForReplication();
    return stack.cluster.primary.id;
  }
  const primary = stack.redis.shard('s1').primary;
  const client = new Redis({ host: '127.0.0.1', port: primary.port, lazyConnect: true });
  client.on('error', () => undefined);
  await client.connect();
  try {
    // Every read-your-writes key starts at 0, as the PostgreSQL rows do.
    for (let i = 0; i < load.rywSessions; i++) await client.set(`chaos:ryw:${i}`, '0');
  } finally {
    client.disconnect();
  }
  await stack.redis.waitForReplication();
  return primary.id;
}

function startLoad(stack: ChaosStack, load: LoadShape, rec: Recorder): RunningLoad {
  const common = { ...load, reconnectDelayMs: RECONNECT_DELAY_MS };
  if (stack.engine === 'postgres')
    return startPgLoad(
      {
        ...common,
        port: stack.proxy.pgPort,
        nodeByPort: stack.nodeByPort,
        queryTimeoutMs: CLIENT_TIMEOUT_MS,
      },
      rec,
    );
  return startRedisLoad({ ...common, port: stack.proxy.redisPort, commandTimeoutMs: CLIENT_TIMEOUT_MS }, rec);
}

/** The final state from the confirmed primary; null when there is none. */
async function readFinal(
  stack: ChaosStack,
  end: EndState,
  rec: Recorder,
): Promise<ReadonlyMap<string, number> | null> {
  if (end.primary === null) return null;
  if (stack.engine === 'postgres') return readPgState(end.primary.port);
  return readRedisState(
    end.primary.port,
    rec.acks.map((a) => a.key),
  );
}

async function proxyEvents(stack: ChaosStack, faultWallClock: number): Promise<RunEvent[]> {
  const events = await stack.proxy
    .api<{ at: number; node: string; type: string; detail: string }[]>('/api/events')
    .catch(() => []);
  return events
    .filter((e) => EVENT_TYPES.has(e.type) && e.at >= faultWallClock - 1000)
    .map((e) => ({ atMs: e.at - faultWallClock, node: e.node, type: e.type, detail: e.detail }))
    .sort((a, b) => a.atMs - b.atMs);
}
