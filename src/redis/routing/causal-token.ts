/**
 * Read-your-writes for Redis: a session's causal token is, per
 * shard, the replication position that covers its last acknowledged write there — the
 * primary's replication history id and offset read on the same link right after the write.
 *
 * A node has applied a write at (replid R, offset O) when its own position (INFO
 * replication, see replication-info.ts) is at or past O in history R, or in a later history
 * that continues R past O (`master_replid2 == R` and O < `second_repl_offset`: the bytes
 * PSYNC would accept from R are shared). Offsets are never compared across unrelated
 * histories: a replica still on the dead primary's history may have an offset past O and
 * not hold the write (the promoted replica started a new history below O), so it does not
 * qualify, and the read goes to the primary instead.
 *
 * Text form (`RWSPLIT TOKEN`): `r1:` then `shard=offset@replid` entries joined by `,`, e.g.
 * `r1:s1=12345@8c2f…(40 hex),s2=678@0a1b…`. A shard may appear more than once (positions
 * from two histories, e.g. a token adopted from another connection across a failover).
 */

/** One position a read of a shard must have applied. */
export interface CausalPosition {
  replid: string;
  offset: number;
}

/** The part of a node's replication state that decides whether it holds a position. */
export interface HistoryPosition {
  replid: string;
  replid2: string;
  secondOffset: number;
  offset: number;
}

/** A token handed to `RWSPLIT TOKEN <token>` that cannot be read. */
export class CausalTokenError extends Error {
  readonly code = 'REDIS_BAD_TOKEN';
}

/** Version prefix of the text form: a later format gets another prefix. */
export const TOKEN_PREFIX = 'r1:';
/** The positions of a shard the token says nothing about (shared: read-only). */
const NO_POSITIONS: readonly CausalPosition[] = Object.freeze([]);

/** Positions kept per shard: a bound on what adopted tokens can pile up. */
export const MAX_POSITIONS_PER_SHARD = 4;
const ENTRY = /^([A-Za-z0-9_.:-]+)=(\d{1,19})@([0-9a-f]{40})$/;
const FORMAT_HINT =
  'expected r1:<shard>=<offset>@<40-hex replid>[,<shard>=<offset>@<replid>…] as RWSPLIT TOKEN returns it';

/** Whether a node at `node` has applied everything up to `want` (see the module comment). */
export function covers(node: HistoryPosition, want: CausalPosition): boolean {
  if (node.offset < want.offset) return false;
  if (node.replid === want.replid) return true;
  return node.replid2 === want.replid && want.offset < node.secondOffset;
}

/** Whether `primary`'s history branched off `want`'s before its offset: the write is lost there. */
export function excludes(primary: HistoryPosition, want: CausalPosition): boolean {
  return primary.replid2 === want.replid && want.offset >= primary.secondOffset;
}

/**
 * The positions one session must see, per shard index. Mutable; owned by one session.
 */
export class CausalToken {
  private readonly byShard = new Map<number, CausalPosition[]>();

  /** Positions a read of `shard` must have applied (empty: no constraint). */
  forShard(shard: number): readonly CausalPosition[] {
    return this.byShard.get(shard) ?? NO_POSITIONS;
  }

  get empty(): boolean {
    return this.byShard.size === 0;
  }

  /**
   * Records the position a shard's primary reported right after this session's write.
   * That position covers every write the primary holds, so earlier positions it covers are
   * dropped, and so are positions its history excludes (lost in a failover: no node can serve
   * them, keeping them would pin reads to the primary for good). Positions from histories the
   * primary does not know are kept: they may come from a newer primary whose answer arrived
   * first, and a read then goes to the primary, which is safe.
   */
  recordWrite(shard: number, primary: HistoryPosition): void {
    let offset = primary.offset;
    const kept: CausalPosition[] = [];
    for (const p of this.forShard(shard)) {
      if (p.replid === primary.replid) offset = Math.max(offset, p.offset);
      else if (!covers(primary, p) && !excludes(primary, p)) kept.push(p);
    }
    kept.push({ replid: primary.replid, offset });
    this.byShard.set(shard, kept.slice(-MAX_POSITIONS_PER_SHARD));
  }

  /** Adds positions from another token (a connection or rwsplit instance handing its writes over). */
  adopt(other: ReadonlyMap<number, readonly CausalPosition[]>): void {
    for (const [shard, positions] of other) {
      const list = [...this.forShard(shard)];
      for (const p of positions) {
        const same = list.find((x) => x.replid === p.replid);
        if (same) same.offset = Math.max(same.offset, p.offset);
        else list.push({ ...p });
      }
      if (list.length > MAX_POSITIONS_PER_SHARD) {
        throw new CausalTokenError(
          `the token would keep more than ${MAX_POSITIONS_PER_SHARD} replication histories for one shard`,
        );
      }
      this.byShard.set(shard, list);
    }
  }

  /** The text form, or null when the session has no position yet. `names[i]` is shard i's name. */
  format(names: readonly string[]): string | null {
    if (this.byShard.size === 0) return null;
    const parts: string[] = [];
    for (const [shard, positions] of [...this.byShard].sort((a, b) => a[0] - b[0])) {
      for (const p of positions) parts.push(`${names[shard]}=${p.offset}@${p.replid}`);
    }
    return TOKEN_PREFIX + parts.join(',');
  }
}

/**
 * Reads the text form. Shards are looked up by name in `names`.
 * @throws CausalTokenError naming the problem and the expected format
 */
export function parseCausalToken(text: string, names: readonly string[]): Map<number, CausalPosition[]> {
  if (!text.startsWith(TOKEN_PREFIX)) throw new CausalTokenError(`malformed causal token: ${FORMAT_HINT}`);
  const out = new Map<number, CausalPosition[]>();
  const body = text.slice(TOKEN_PREFIX.length);
  if (body === '') throw new CausalTokenError(`empty causal token: ${FORMAT_HINT}`);
  for (const entry of body.split(',')) {
    const m = ENTRY.exec(entry);
    if (!m)
      throw new CausalTokenError(`malformed causal token entry '${entry.slice(0, 80)}': ${FORMAT_HINT}`);
    const shard = names.indexOf(m[1]!);
    if (shard < 0) {
      throw new CausalTokenError(
        `causal token names shard '${m[1]}', which this rwsplit does not have (shards: ${names.join(', ')})`,
      );
    }
    const offset = Number(m[2]);
    if (!Number.isSafeInteger(offset)) throw new CausalTokenError(`offset ${m[2]} is out of range`);
    const list = out.get(shard) ?? [];
    list.push({ replid: m[3]!, offset });
    out.set(shard, list);
  }
  return out;
}
