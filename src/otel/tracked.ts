import type { Attributes, BatchObservableResult, Observable } from '@opentelemetry/api';

/*
 * Gauges read live objects (a pool's connections, a queue's depth, a breaker's state), so the
 * bridge must know which objects exist. It learns them from the modules' lifecycle channels
 * (`buttress:<module>:create` / `:close`) and from `observe`, and holds them weakly: an object
 * the application dropped is forgotten by the next collection, and nothing is kept anywhere but
 * in the instrument() handle.
 *
 * Totals read from `stats()` (hits, calls) are cumulative per object. Summed over the objects of
 * one series they would drop when an object goes away, which a monotonic counter must not do: the
 * last totals of an object that was closed or collected are kept as "retired" and added to every
 * later sum.
 */

/** One series of one instrument: what an observation is summed into. */
interface Series {
  readonly instrument: Observable;
  readonly attributes: Attributes;
}

/**
 * Objects of one kind, held weakly, with their last reported totals. A closed object is held until
 * the next collection has read it once more (so what it counted after the previous collection is
 * not lost), then retired.
 */
export class Tracked<T extends object> {
  readonly #refs = new Set<WeakRef<T>>();
  readonly #index = new WeakMap<T, WeakRef<T>>();
  /** Objects closed since the last collection: read once more, then retired. */
  readonly #closing = new Map<WeakRef<T>, T>();
  /** The totals each live object reported last, by series key. */
  readonly #last = new Map<WeakRef<T>, Map<string, number>>();
  /** Totals of objects that went away, by series key. */
  readonly #retired = new Map<string, number>();
  /** Totals of objects retired during this collection, which already reported them: added after it. */
  readonly #pending = new Map<string, number>();
  readonly #series = new Map<string, Series>();

  /** Starts tracking `instance` (again, if it was known: no-op). */
  add(instance: T): void {
    if (this.#index.has(instance)) return;
    const ref = new WeakRef(instance);
    this.#index.set(instance, ref);
    this.#refs.add(ref);
  }

  /** Stops tracking `instance` after the next collection, which reads it a last time. */
  delete(instance: T): void {
    const ref = this.#index.get(instance);
    if (ref === undefined) return;
    this.#index.delete(instance);
    this.#refs.delete(ref);
    this.#closing.set(ref, instance);
  }

  /** Whether `instance` is tracked. */
  has(instance: T): boolean {
    return this.#index.has(instance);
  }

  /**
   * Each object to read: the live ones (collected ones are retired on the way), then the ones
   * closed since the last collection (`open` false), which are retired once the walk is done.
   * Yields its ref, to record totals against.
   */
  *live(): Generator<[ref: WeakRef<T>, instance: T, open: boolean]> {
    for (const ref of [...this.#refs]) {
      const instance = ref.deref();
      if (instance === undefined) this.#retire(ref);
      else yield [ref, instance, true];
    }
    const closing = [...this.#closing];
    for (const [ref, instance] of closing) yield [ref, instance, false];
    for (const [ref] of closing) {
      this.#closing.delete(ref);
      this.#retire(ref, this.#pending);
    }
  }

  #retire(ref: WeakRef<T>, into: Map<string, number> = this.#retired): void {
    const last = this.#last.get(ref);
    if (last !== undefined) {
      for (const [key, value] of last) into.set(key, (into.get(key) ?? 0) + value);
    }
    this.#last.delete(ref);
    this.#refs.delete(ref);
  }

  /** @internal For {@link Observations}: records `ref`'s latest total of one series. */
  _total(ref: WeakRef<T>, key: string, series: Series, value: number): void {
    if (!this.#series.has(key)) this.#series.set(key, series);
    let last = this.#last.get(ref);
    if (last === undefined) {
      last = new Map();
      this.#last.set(ref, last);
    }
    last.set(key, value);
  }

  /**
   * @internal The retired totals, to add to the collection ending now; those of objects retired
   * during it count from the next one on (this one read them live).
   */
  _retired(): Iterable<[string, Series, number]> {
    const out: [string, Series, number][] = [];
    for (const [key, value] of this.#retired) out.push([key, this.#series.get(key)!, value]);
    for (const [key, value] of this.#pending) this.#retired.set(key, (this.#retired.get(key) ?? 0) + value);
    this.#pending.clear();
    return out;
  }
}

/**
 * The observations of one collection: values of the same series (same instrument, same
 * attributes) are summed, since an SDK keeps only the last value observed for a series.
 */
export class Observations {
  readonly #sums = new Map<string, { series: Series; value: number }>();
  readonly #ids = new Map<Observable, number>();

  /** A gauge value: summed over the objects of the series. */
  gauge(instrument: Observable, attributes: Attributes, value: number): void {
    if (!Number.isFinite(value)) return;
    this.#add(this.#key(instrument, attributes), { instrument, attributes }, value);
  }

  /** A cumulative total of one object (from its stats): summed, and remembered for when it goes away. */
  total<T extends object>(
    tracked: Tracked<T>,
    ref: WeakRef<T>,
    instrument: Observable,
    attributes: Attributes,
    value: number,
  ): void {
    if (!Number.isFinite(value)) return;
    const key = this.#key(instrument, attributes);
    const series = { instrument, attributes };
    tracked._total(ref, key, series, value);
    this.#add(key, series, value);
  }

  /** Reports everything, with the retired totals of `tracked` added in. */
  flush(result: BatchObservableResult, ...tracked: Tracked<object>[]): void {
    for (const t of tracked) for (const [key, series, value] of t._retired()) this.#add(key, series, value);
    for (const { series, value } of this.#sums.values()) {
      result.observe(series.instrument, value, series.attributes);
    }
    this.#sums.clear();
  }

  #add(key: string, series: Series, value: number): void {
    const sum = this.#sums.get(key);
    if (sum === undefined) this.#sums.set(key, { series, value });
    else sum.value += value;
  }

  #key(instrument: Observable, attributes: Attributes): string {
    let id = this.#ids.get(instrument);
    if (id === undefined) {
      id = this.#ids.size;
      this.#ids.set(instrument, id);
    }
    const names = Object.keys(attributes).sort();
    let key = `${id}`;
    for (const name of names) key += `\u0000${name}\u0001${String(attributes[name])}`;
    return key;
  }
}
