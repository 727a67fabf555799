/**
 * A bounded cache keyed by string, in two generations (an approximation of LRU).
 *
 * Why not exact LRU: an exact LRU over a JavaScript `Map` refreshes an entry with a delete and
 * a re-insert on every hit and walks an iterator to evict on every miss; with a long tail of
 * one-off texts (literals inlined by drivers, `pgbench -M simple`) that bookkeeping cost more
 * than classifying the text (measured on the proxy's hot path). Two generations need no
 * per-hit or per-miss bookkeeping: new entries go to the young map; when it fills, it becomes
 * the old map and the previous old map is dropped whole; a hit in the old map moves the entry
 * back to the young one. A hot statement therefore survives indefinitely, and a one-off text
 * lives at most two generations.
 *
 * Why a key-length budget too: the entry bound alone would allow `capacity` texts of the
 * maximum cached length (10,000 × 64 KiB), far more memory than a classifier deserves.
 *
 * @module
 */

/** A two-generation map from string keys to values, bounded in entries and in key length. */
export class GenerationalCache<V> {
  private young = new Map<string, V>();
  private old = new Map<string, V>();
  private youngChars = 0;
  private readonly generationSize: number;
  private readonly generationChars: number;

  /**
   * @param capacity maximum number of entries over both generations (0 disables the cache)
   * @param maxKeyChars maximum total length of all keys, in UTF-16 code units
   */
  constructor(capacity: number, maxKeyChars: number) {
    this.generationSize = capacity <= 0 ? 0 : Math.max(1, Math.floor(capacity / 2));
    this.generationChars = Math.floor(maxKeyChars / 2);
  }

  /** Number of cached entries (both generations; a key may be counted in both). */
  get size(): number {
    return this.young.size + this.old.size;
  }

  /** The cached value, or undefined. An old entry is moved to the young generation. */
  get(key: string): V | undefined {
    const v = this.young.get(key);
    if (v !== undefined) return v;
    const o = this.old.get(key);
    if (o !== undefined) this.set(key, o);
    return o;
  }

  /** Stores a value in the young generation, rotating generations when it is full. */
  set(key: string, value: V): void {
    if (this.generationSize === 0 || key.length > this.generationChars) return;
    if (this.young.size >= this.generationSize || this.youngChars + key.length > this.generationChars) {
      this.old = this.young;
      this.young = new Map();
      this.youngChars = 0;
    }
    this.young.set(key, value);
    this.youngChars += key.length;
  }

  /** Drops every entry. */
  clear(): void {
    this.young = new Map();
    this.old = new Map();
    this.youngChars = 0;
  }
}
