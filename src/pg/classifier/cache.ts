/**
 * A least-recently-used cache keyed by string, bounded both in entries and in the total length of its keys.
 *
 * Why LRU rather than clearing everything when full: applications send a small hot set of statement texts
 * over and over, plus a long tail of one-off texts (ad-hoc queries, literals inlined by ORMs). Clearing on
 * full would throw the hot set away every `capacity` one-off statements and re-classify it in a burst; LRU
 * keeps it. A JavaScript `Map` iterates in insertion order, so re-inserting on a hit and deleting the first
 * key on overflow gives O(1) LRU without a linked list.
 *
 * Why a key-length budget too: the entry bound alone would allow `capacity` texts of the maximum cached
 * length (10,000 x 64 KiB), far more memory than a classifier deserves.
 *
 * @module
 */

/** An LRU map from string keys to values. */
export class LruCache<V> {
  private readonly entries = new Map<string, V>();
  private keyChars = 0;

  /**
   * @param capacity maximum number of entries (at least 1 is kept; 0 disables the cache)
   * @param maxKeyChars maximum total length of all keys, in UTF-16 code units
   */
  constructor(
    private readonly capacity: number,
    private readonly maxKeyChars: number,
  ) {}

  /** Number of cached entries. */
  get size(): number {
    return this.entries.size;
  }

  /** The cached value, marked as most recently used; undefined on a miss. */
  get(key: string): V | undefined {
    const value = this.entries.get(key);
    if (value !== undefined) {
      this.entries.delete(key);
      this.entries.set(key, value);
    }
    return value;
  }

  /** Stores a value, evicting the least recently used entries while over either bound. */
  set(key: string, value: V): void {
    if (this.capacity <= 0 || key.length > this.maxKeyChars) return;
    if (this.entries.delete(key)) this.keyChars -= key.length;
    this.entries.set(key, value);
    this.keyChars += key.length;
    while (this.entries.size > this.capacity || this.keyChars > this.maxKeyChars) {
      const oldest = this.entries.keys().next();
      if (oldest.done === true) break;
      this.entries.delete(oldest.value);
      this.keyChars -= oldest.value.length;
    }
  }

  /** Drops every entry. */
  clear(): void {
    this.entries.clear();
    this.keyChars = 0;
  }
}
