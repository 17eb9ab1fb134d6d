/**
 * Tests only (the unit property test and the Redis integration test), never bundled: an
 * obviously correct rate limiter to check GCRA against. A token bucket of `burst` tokens, full
 * at first, refilled continuously at `rate / per` tokens per ms, computed in exact rational
 * arithmetic on BigInt, so that no rounding can hide a disagreement.
 */

/** A non-negative fraction n/d in lowest terms. */
class Q {
  constructor(
    readonly n: bigint,
    readonly d: bigint,
  ) {}

  static of(n: bigint | number, d: bigint | number = 1n): Q {
    let nn = BigInt(n);
    let dd = BigInt(d);
    const g = gcd(nn < 0n ? -nn : nn, dd);
    if (g > 1n) {
      nn /= g;
      dd /= g;
    }
    return new Q(nn, dd);
  }

  add(o: Q): Q {
    return Q.of(this.n * o.d + o.n * this.d, this.d * o.d);
  }
  sub(o: Q): Q {
    return Q.of(this.n * o.d - o.n * this.d, this.d * o.d);
  }
  mul(o: Q): Q {
    return Q.of(this.n * o.n, this.d * o.d);
  }
  cmp(o: Q): number {
    const l = this.n * o.d;
    const r = o.n * this.d;
    return l < r ? -1 : l > r ? 1 : 0;
  }
  min(o: Q): Q {
    return this.cmp(o) <= 0 ? this : o;
  }
  floor(): number {
    return Number(this.n >= 0n ? this.n / this.d : -((-this.n + this.d - 1n) / this.d));
  }
  ceil(): number {
    return Number(this.n >= 0n ? (this.n + this.d - 1n) / this.d : -(-this.n / this.d));
  }
}

function gcd(a: bigint, b: bigint): bigint {
  while (b !== 0n) [a, b] = [b, a % b];
  return a === 0n ? 1n : a;
}

export interface ReferenceDecision {
  allowed: boolean;
  retryAfter: number;
  remaining: number;
  resetAfter: number;
}

/** One key's token bucket. */
export class ReferenceBucket {
  #tokens: Q;
  #last: number | undefined;
  readonly #burst: Q;
  /** Tokens per ms. */
  readonly #refill: Q;
  /** Ms per token. */
  readonly #perToken: Q;

  constructor(rate: number, per: number, burst: number) {
    this.#burst = Q.of(burst);
    this.#tokens = this.#burst;
    this.#refill = Q.of(rate, per);
    this.#perToken = Q.of(per, rate);
  }

  /** A call of `cost` at integer time `now` (ms, never decreasing). */
  take(now: number, cost: number): ReferenceDecision {
    if (this.#last !== undefined) {
      this.#tokens = this.#tokens.add(Q.of(now - this.#last).mul(this.#refill)).min(this.#burst);
    }
    this.#last = now;
    const want = Q.of(cost);
    if (this.#tokens.cmp(want) >= 0) {
      this.#tokens = this.#tokens.sub(want);
      return {
        allowed: true,
        retryAfter: 0,
        remaining: this.#tokens.floor(),
        resetAfter: this.#burst.sub(this.#tokens).mul(this.#perToken).ceil(),
      };
    }
    return {
      allowed: false,
      retryAfter: want.sub(this.#tokens).mul(this.#perToken).ceil(),
      remaining: this.#tokens.floor(),
      resetAfter: this.#burst.sub(this.#tokens).mul(this.#perToken).ceil(),
    };
  }
}
