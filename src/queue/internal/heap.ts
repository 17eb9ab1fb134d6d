/**
 * A binary min-heap of items ordered by a numeric key, ties broken by insertion order. Used by the
 * memory backend for the waiting set (key: priority * 2^32 + counter) and the delayed set (key:
 * due time). Deletion is lazy: callers skip popped items that are no longer in that state.
 */
export class MinHeap<T> {
  #keys: number[] = [];
  #seqs: number[] = [];
  #items: T[] = [];
  #seq = 0;

  get size(): number {
    return this.#items.length;
  }

  push(key: number, item: T): void {
    const keys = this.#keys;
    const seqs = this.#seqs;
    const items = this.#items;
    let i = items.length;
    const seq = this.#seq++;
    keys.push(key);
    seqs.push(seq);
    items.push(item);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (keys[parent]! < key || (keys[parent] === key && seqs[parent]! < seq)) break;
      keys[i] = keys[parent]!;
      seqs[i] = seqs[parent]!;
      items[i] = items[parent]!;
      i = parent;
    }
    keys[i] = key;
    seqs[i] = seq;
    items[i] = item;
  }

  /** The smallest key, or undefined when empty. */
  peekKey(): number | undefined {
    return this.#keys[0];
  }

  peek(): T | undefined {
    return this.#items[0];
  }

  pop(): T | undefined {
    const items = this.#items;
    if (items.length === 0) return undefined;
    const top = items[0];
    const keys = this.#keys;
    const seqs = this.#seqs;
    const lastKey = keys.pop()!;
    const lastSeq = seqs.pop()!;
    const lastItem = items.pop()!;
    const n = items.length;
    if (n > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        let c = l;
        if (r < n && (keys[r]! < keys[l]! || (keys[r] === keys[l] && seqs[r]! < seqs[l]!))) c = r;
        if (keys[c]! > lastKey || (keys[c] === lastKey && seqs[c]! > lastSeq)) break;
        keys[i] = keys[c]!;
        seqs[i] = seqs[c]!;
        items[i] = items[c]!;
        i = c;
      }
      keys[i] = lastKey;
      seqs[i] = lastSeq;
      items[i] = lastItem;
    }
    return top;
  }
}
