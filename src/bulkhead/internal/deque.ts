/**
 * What the deque keeps on each entry: its position, so that {@link Deque.remove} is O(1). Owned
 * by the deque; -1 when the entry is not in one.
 */
export interface DequeEntry {
  dequeIndex: number;
}

/** Below this many slots a deque never compacts: scanning a few tombstones is cheaper. */
const MIN_COMPACT = 32;

/**
 * A double-ended queue on a ring buffer whose capacity is a power of two, with O(1) removal of
 * any entry. Bulkhead waiters are appended at the tail and taken from the head (FIFO) or the tail
 * (LIFO); a waiter that leaves early (timeout, abort) is removed from wherever it is.
 *
 * Positions are virtual indices that only grow while the deque holds entries (`head <= i <
 * tail`), stored at `i & mask`; growing the buffer keeps them, so an entry's `dequeIndex` stays
 * valid. Removal leaves a tombstone (`undefined`) in place; tombstones at either end are trimmed
 * at once, those in the middle are skipped when an end reaches them, and when they outnumber live
 * entries the buffer is compacted (renumbering the live ones), so every operation is O(1)
 * amortised and memory stays proportional to the live entries. Unlike `Array.shift()`, taking
 * from the head never moves the other entries.
 */
export class Deque<T extends DequeEntry> {
  #buf: (T | undefined)[];
  #mask: number;
  #head = 0;
  #tail = 0;
  #size = 0;

  /** @param capacity initial slots (rounded up to a power of two); the deque grows as needed. */
  constructor(capacity = 16) {
    let n = 4;
    while (n < capacity) n *= 2;
    this.#buf = new Array(n).fill(undefined);
    this.#mask = n - 1;
  }

  /** Live entries. */
  get size(): number {
    return this.#size;
  }

  /** Slots between head and tail, tombstones included (for tests of the compaction bound). */
  get span(): number {
    return this.#tail - this.#head;
  }

  /** Appends at the tail. The entry must not be in a deque already. */
  push(item: T): void {
    if (this.#tail - this.#head === this.#buf.length) this.#grow();
    const i = this.#tail++;
    this.#buf[i & this.#mask] = item;
    item.dequeIndex = i;
    this.#size++;
  }

  /** Removes and returns the entry at the head (the oldest), or undefined when empty. */
  shift(): T | undefined {
    if (this.#size === 0) return undefined;
    // The ends never rest on a tombstone (remove() trims them), so the head is live.
    const slot = this.#head & this.#mask;
    const item = this.#buf[slot]!;
    this.#buf[slot] = undefined;
    this.#head++;
    this.#taken(item);
    this.#trimHead();
    return item;
  }

  /** Removes and returns the entry at the tail (the newest), or undefined when empty. */
  pop(): T | undefined {
    if (this.#size === 0) return undefined;
    const slot = (this.#tail - 1) & this.#mask;
    const item = this.#buf[slot]!;
    this.#buf[slot] = undefined;
    this.#tail--;
    this.#taken(item);
    this.#trimTail();
    return item;
  }

  /** The entry at the head without removing it. */
  peekFirst(): T | undefined {
    return this.#size === 0 ? undefined : this.#buf[this.#head & this.#mask];
  }

  /** The entry at the tail without removing it. */
  peekLast(): T | undefined {
    return this.#size === 0 ? undefined : this.#buf[(this.#tail - 1) & this.#mask];
  }

  /** Removes `item` from wherever it is. Returns false when it is not in this deque. */
  remove(item: T): boolean {
    const i = item.dequeIndex;
    if (i < this.#head || i >= this.#tail || this.#buf[i & this.#mask] !== item) return false;
    this.#buf[i & this.#mask] = undefined;
    this.#taken(item);
    if (i === this.#head) this.#trimHead();
    else if (i === this.#tail - 1) this.#trimTail();
    else if (this.#tail - this.#head > MIN_COMPACT && this.#tail - this.#head > 2 * this.#size)
      this.#compact();
    return true;
  }

  /** Removes every entry, returning them from head to tail. */
  clear(): T[] {
    const out: T[] = [];
    for (let i = this.#head; i < this.#tail; i++) {
      const item = this.#buf[i & this.#mask];
      if (item !== undefined) {
        item.dequeIndex = -1;
        out.push(item);
      }
      this.#buf[i & this.#mask] = undefined;
    }
    this.#head = this.#tail = this.#size = 0;
    return out;
  }

  /** Live entries from head to tail (a copy; for tests and debugging). */
  toArray(): T[] {
    const out: T[] = [];
    for (let i = this.#head; i < this.#tail; i++) {
      const item = this.#buf[i & this.#mask];
      if (item !== undefined) out.push(item);
    }
    return out;
  }

  #taken(item: T): void {
    item.dequeIndex = -1;
    if (--this.#size === 0) {
      // Restart numbering so virtual indices stay small; every slot is already undefined.
      this.#head = this.#tail = 0;
    }
  }

  #trimHead(): void {
    while (this.#head < this.#tail && this.#buf[this.#head & this.#mask] === undefined) this.#head++;
  }

  #trimTail(): void {
    while (this.#tail > this.#head && this.#buf[(this.#tail - 1) & this.#mask] === undefined) this.#tail--;
  }

  #grow(): void {
    const old = this.#buf;
    const oldMask = this.#mask;
    const buf: (T | undefined)[] = new Array(old.length * 2).fill(undefined);
    const mask = buf.length - 1;
    // Same virtual indices, new slots: every dequeIndex stays valid.
    for (let i = this.#head; i < this.#tail; i++) buf[i & mask] = old[i & oldMask];
    this.#buf = buf;
    this.#mask = mask;
  }

  /** Packs live entries from the head, renumbering them. O(span), run when span > 2·size. */
  #compact(): void {
    const buf = this.#buf;
    const mask = this.#mask;
    let write = this.#head;
    for (let read = this.#head; read < this.#tail; read++) {
      const item = buf[read & mask];
      if (item === undefined) continue;
      if (read !== write) {
        buf[read & mask] = undefined;
        buf[write & mask] = item;
        item.dequeIndex = write;
      }
      write++;
    }
    this.#tail = write;
  }
}
