/** What a graceful restart's drain did with its clients (the proxies' `drain` resolves with it). */
export interface DrainTally {
  handedOver: number;
  atBoundary: number;
  atTimeout: number;
}

/** A session's handover as a proxy's `handOver` reports it: not yet, not movable, or under way. */
export type Handover = 'stays' | 'later' | Promise<boolean>;

/**
 * Tallies a handover under way once it settles (handed over, or closed at its boundary when
 * the successor could not take it) and keeps its promise in `moves`. True when the drain has
 * nothing more to do with the session now ('later' or under way); false for 'stays', which
 * the caller closes itself.
 */
export function tallyHandover(moving: Handover, tally: DrainTally, moves: Promise<void>[]): boolean {
  if (moving === 'stays') return false;
  if (moving !== 'later')
    moves.push(
      moving.then((ok) => {
        if (ok) tally.handedOver++;
        else tally.atBoundary++;
      }),
    );
  return true;
}
