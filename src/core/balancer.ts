/**
 * Read load balancing: chooses one node among the candidates the
 * router found eligible for a read. Pure: no sockets, no clocks; randomness is injected so
 * tests are deterministic.
 */
import type { BalanceStrategy } from './types.js';

/** What the balancer needs to know of one candidate node at decision time. */
export interface Candidate {
  id: string;
  /** >= 0; 0 => never chosen by 'weighted' unless nothing else */
  weight: number;
  /** requests in flight on this node right now */
  outstanding: number;
  /** EWMA of recent request latency (NaN or 0 when unknown) */
  latencyMs: number;
}

/** Chooses one read target among eligible candidates. */
export interface Balancer {
  readonly strategy: BalanceStrategy;
  /** picks one of `candidates` (non-empty) and returns it; never returns undefined for non-empty input */
  pick(candidates: readonly Candidate[]): Candidate;
}

/** Options of {@link createBalancer}. */
export interface BalancerOptions {
  /** Uniform [0, 1) source used by `lowest-latency`; defaults to `Math.random`. */
  random?: () => number;
}

/** `pick()` was called with no candidate: the caller must decide (fallback or error) before balancing. */
export class NoCandidatesError extends Error {
  /** Stable machine-readable identifier of the failure. */
  readonly code = 'NO_CANDIDATES';

  constructor(strategy: BalanceStrategy) {
    super(`balancer '${strategy}' was given no candidate node to pick from`);
    this.name = new.target.name;
  }
}

/** Creates a balancer for `strategy`. Each balancer keeps its own per-node-id state. */
export function createBalancer(strategy: BalanceStrategy, opts: BalancerOptions = {}): Balancer {
  switch (strategy) {
    case 'round-robin':
      return new RoundRobinBalancer();
    case 'weighted':
      return new SmoothWeightedBalancer();
    case 'least-outstanding':
      return new LeastOutstandingBalancer();
    case 'lowest-latency':
      return new PowerOfTwoLatencyBalancer(opts.random ?? Math.random);
  }
}

/**
 * Rotation by "least recently picked": each pick takes the candidate whose id was picked
 * longest ago (never-picked first, then list order).
 *
 * Why not `counter % length`: the candidate set changes between calls (a node goes down, a
 * read-your-writes read only accepts replicas that replayed its token), and a counter indexed
 * into a list whose length and order change can hit the same node several times in a row
 * (alternating [a,b] and [a,b,c] with a counter gives a, b, a, a, ...). Ordering by per-id
 * last pick is fair over whatever set is offered: among the nodes offered, none is picked
 * twice before every other has been picked once, and a node that joins is tried at once.
 * Memory is one entry per node id ever seen, bounded by the configured topology.
 */
class Rotation {
  private readonly lastPicked = new Map<string, number>();
  private sequence = 0;

  /** Returns the least recently picked of `candidates` (non-empty) and records the pick. */
  pick<C extends Candidate>(candidates: readonly C[]): C {
    let best = candidates[0] as C;
    let bestSeq = this.lastPicked.get(best.id) ?? -1;
    for (let i = 1; i < candidates.length; i++) {
      const c = candidates[i] as C;
      const seq = this.lastPicked.get(c.id) ?? -1;
      if (seq < bestSeq) {
        best = c;
        bestSeq = seq;
      }
    }
    this.lastPicked.set(best.id, this.sequence++);
    return best;
  }
}

class RoundRobinBalancer implements Balancer {
  readonly strategy = 'round-robin';
  private readonly rotation = new Rotation();

  pick(candidates: readonly Candidate[]): Candidate {
    if (candidates.length === 0) throw new NoCandidatesError(this.strategy);
    return this.rotation.pick(candidates);
  }
}

/** A weight usable in arithmetic: negative, NaN and infinite weights count as 0. */
function usableWeight(weight: number): number {
  return Number.isFinite(weight) && weight > 0 ? weight : 0;
}

/**
 * Smooth weighted round-robin, the algorithm of nginx's `ngx_http_upstream_get_peer`
 * (src/http/ngx_http_upstream_round_robin.c): on every pick each candidate's `current` grows
 * by its weight, the largest `current` wins and gives back the sum of the weights. The result
 * is deterministic and interleaved (5:1:1 gives a a b a c a a), not bursty like "a five
 * times, then b, then c".
 *
 * Set changes: `current` is kept per node id, including for nodes absent from this call. The
 * sum of `current` over the nodes offered is unchanged by a pick, so a node that leaves and
 * returns finds the others where it left them and the sum over all known nodes stays 0; a new
 * node starts at 0, as in nginx. Weight-0 nodes are chosen only when every candidate has
 * weight 0, and then in plain rotation.
 */
class SmoothWeightedBalancer implements Balancer {
  readonly strategy = 'weighted';
  private readonly current = new Map<string, number>();
  private readonly zeroWeightRotation = new Rotation();

  pick(candidates: readonly Candidate[]): Candidate {
    if (candidates.length === 0) throw new NoCandidatesError(this.strategy);
    let best: Candidate | undefined;
    let bestCurrent = -Infinity;
    let total = 0;
    for (const c of candidates) {
      const weight = usableWeight(c.weight);
      if (weight === 0) continue;
      const current = (this.current.get(c.id) ?? 0) + weight;
      this.current.set(c.id, current);
      total += weight;
      if (current > bestCurrent) {
        best = c;
        bestCurrent = current;
      }
    }
    if (best === undefined) return this.zeroWeightRotation.pick(candidates);
    this.current.set(best.id, bestCurrent - total);
    return best;
  }
}

/**
 * Fewest requests in flight. Equal nodes are served in rotation (least recently picked), so
 * on an idle proxy, where every node has 0 outstanding, reads still spread over all of them
 * instead of all going to the first in the list.
 */
class LeastOutstandingBalancer implements Balancer {
  readonly strategy = 'least-outstanding';
  private readonly rotation = new Rotation();

  pick(candidates: readonly Candidate[]): Candidate {
    if (candidates.length === 0) throw new NoCandidatesError(this.strategy);
    let min = Infinity;
    for (const c of candidates) min = Math.min(min, c.outstanding);
    const tied = candidates.filter((c) => c.outstanding === min);
    // All-NaN outstanding would leave `tied` empty: rotate over everything instead.
    return this.rotation.pick(tied.length > 0 ? tied : candidates);
  }
}

/** Latency known? NaN, 0 and negative mean "never measured". */
function knownLatency(latencyMs: number): boolean {
  return Number.isFinite(latencyMs) && latencyMs > 0;
}

/**
 * Negative when `a` should be preferred to `b`: unknown latency first (a new or recovered
 * node must receive traffic to be measured at all), then lower latency, then fewer requests
 * in flight; 0 on a full tie.
 */
function compareForLatency(a: Candidate, b: Candidate): number {
  const aKnown = knownLatency(a.latencyMs);
  const bKnown = knownLatency(b.latencyMs);
  if (aKnown !== bKnown) return aKnown ? 1 : -1;
  if (aKnown && a.latencyMs !== b.latencyMs) return a.latencyMs - b.latencyMs;
  return a.outstanding - b.outstanding;
}

/**
 * Power of two choices over latency (Mitzenmacher, "The Power of Two Choices in Randomized
 * Load Balancing", 2001): draw two distinct candidates at random and keep the better. Always
 * picking the single fastest node would send it every read until its EWMA catches up (herd
 * behaviour, worse with several proxy instances sharing the nodes); two random choices still
 * favour fast nodes strongly while the slowest node is never drawn as the better of the two
 * and everyone else keeps being sampled, which keeps their latency estimates fresh.
 */
class PowerOfTwoLatencyBalancer implements Balancer {
  readonly strategy = 'lowest-latency';

  constructor(private readonly random: () => number) {}

  pick(candidates: readonly Candidate[]): Candidate {
    if (candidates.length === 0) throw new NoCandidatesError(this.strategy);
    if (candidates.length === 1) return candidates[0] as Candidate;
    const i = this.randomIndex(candidates.length);
    let j = this.randomIndex(candidates.length - 1);
    if (j >= i) j++; // distinct from i, uniform over the others
    const a = candidates[i] as Candidate;
    const b = candidates[j] as Candidate;
    return compareForLatency(b, a) < 0 ? b : a;
  }

  /** Uniform integer in [0, n), robust to a random source that returns exactly 1. */
  private randomIndex(n: number): number {
    return Math.min(n - 1, Math.floor(this.random() * n));
  }
}
