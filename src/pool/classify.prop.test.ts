import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { classifySql } from './classify.js';
import { decodeToken, encodeToken } from './session.js';

/** Read statements from a small grammar, as token lists (so noise can be put between tokens). */
const ident = fc.constantFrom('users', 'orders', 'id', 'name', 'a', 'b', '"Mixed Case"', 'x1');
const expr = fc.oneof(
  ident,
  fc.constantFrom(
    '1',
    '$1',
    "'text'",
    "'it''s'",
    '$$dollar$$',
    'now()',
    'lower(name)',
    'count(*)',
    'coalesce(a, b)',
  ),
);
const readStatement: fc.Arbitrary<string[]> = fc
  .record({
    cols: fc.array(expr, { minLength: 1, maxLength: 3 }),
    table: ident,
    where: fc.option(fc.tuple(ident, fc.constantFrom('=', '<', 'IN', 'LIKE'), expr), { nil: undefined }),
    order: fc.option(ident, { nil: undefined }),
    limit: fc.option(fc.nat(100), { nil: undefined }),
    cte: fc.boolean(),
  })
  .map(({ cols, table, where, order, limit, cte }) => {
    const t: string[] = [];
    if (cte) t.push('WITH', 'w', 'AS', '(', 'SELECT', '1', ')');
    t.push('SELECT', cols.join(' , '), 'FROM', table);
    if (where) {
      const [l, op, r] = where;
      t.push('WHERE', l, op, op === 'IN' ? `( ${r} )` : r);
    }
    if (order) t.push('ORDER', 'BY', order);
    if (limit !== undefined) t.push('LIMIT', String(limit));
    return t;
  });
const noise = fc.constantFrom(
  ' ',
  '\n',
  '\t',
  ' /* DELETE FROM t; */ ',
  ' /* nested /* INSERT */ */ ',
  ' -- UPDATE t\n',
);

function join(tokens: string[], gaps: string[]): string {
  return tokens.map((t, i) => (i === 0 ? t : `${gaps[i % gaps.length] ?? ' '}${t}`)).join('');
}

describe('classifySql: properties', () => {
  it('never throws, whatever the input, and always answers read or write', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (sql) => {
        const c = classifySql(sql);
        expect(['read', 'write']).toContain(c.kind);
      }),
      { numRuns: 2_000 },
    );
    fc.assert(
      fc.property(
        fc.string({ unit: fc.constantFrom(...`'"$-/*;()eEuU& \\\nSELECT`.split('')), maxLength: 60 }),
        (sql) => {
          expect(['read', 'write']).toContain(classifySql(sql).kind);
        },
      ),
      { numRuns: 2_000 },
    );
  });

  it('a read stays a read through any comments, whitespace and case (write words in comments included)', () => {
    fc.assert(
      fc.property(
        readStatement,
        fc.array(noise, { minLength: 1, maxLength: 5 }),
        fc.boolean(),
        (tokens, gaps, lower) => {
          const sql = join(tokens, gaps);
          expect(classifySql(lower ? sql.toLowerCase() : sql).kind).toBe('read');
        },
      ),
      { numRuns: 1_000 },
    );
  });

  it('a read becomes a write with a locking clause, INTO, a writing CTE, a writing function or a second statement', () => {
    const spoiler = fc.constantFrom(
      (t: string[]) => [...t, 'FOR', 'UPDATE'],
      (t: string[]) => [...t, 'FOR', 'SHARE'],
      (t: string[]) => [...t, 'FOR', 'NO', 'KEY', 'UPDATE'],
      (t: string[]) =>
        [
          t[0] === 'WITH' ? t.slice(0, 7) : [],
          'SELECT',
          "nextval('s')",
          ...t.slice(t[0] === 'WITH' ? 8 : 1),
        ].flat(),
      (t: string[]) => [
        'WITH',
        'd',
        'AS',
        '(',
        'DELETE',
        'FROM',
        'x',
        'RETURNING',
        '*',
        ')',
        ...(t[0] === 'WITH' ? t.slice(7) : t),
      ],
      (t: string[]) => [...t, ';', 'SELECT', '1'],
      (t: string[]) => [...t, ';', 'DELETE', 'FROM', 'x'],
      (t: string[]) => (t[0] === 'WITH' ? t : [t[0]!, t[1]!, 'INTO', 'copy', ...t.slice(2)]),
    );
    fc.assert(
      fc.property(
        readStatement,
        spoiler,
        fc.array(noise, { minLength: 1, maxLength: 3 }),
        (tokens, spoil, gaps) => {
          const spoiled = spoil(tokens);
          if (spoiled === tokens) return;
          expect(classifySql(join(spoiled, gaps)).kind).toBe('write');
        },
      ),
      { numRuns: 1_000 },
    );
  });

  it('write words inside strings, dollar quotes and quoted identifiers never make a read a write', () => {
    const hidden = fc
      .constantFrom(
        'DELETE FROM t',
        'INSERT INTO t',
        'UPDATE t',
        'nextval(1)',
        '; DROP TABLE t',
        'FOR UPDATE',
      )
      .chain((w) =>
        fc.constantFrom(
          `'${w.replace(/'/g, "''")}'`,
          `$$${w}$$`,
          `$q$${w}$q$`,
          `"${w.replace(/"/g, '""')}"`,
          `E'${w}'`,
        ),
      );
    fc.assert(
      fc.property(hidden, (literal) => {
        expect(classifySql(`SELECT ${literal} FROM t`).kind).toBe('read');
      }),
    );
  });
});

describe('consistency tokens', () => {
  it('round-trip any position and sticky time', () => {
    fc.assert(
      fc.property(
        fc.option(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), { nil: undefined }),
        fc.integer({ min: 0, max: 2 ** 52 }),
        (lsn, until) => {
          const token = encodeToken(lsn, until);
          expect(token).toMatch(/^[0-9a-z.]+$/);
          expect(decodeToken(token)).toEqual({ lsn, until });
        },
      ),
    );
  });

  it('reject anything else without throwing', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 40 }), (s) => {
        const decoded = decodeToken(s);
        if (decoded !== undefined)
          expect(decodeToken(encodeToken(decoded.lsn, decoded.until))).toEqual(decoded);
      }),
      { numRuns: 2_000 },
    );
    for (const bad of [
      '',
      '1',
      '1.',
      '1..x.',
      '2.10.',
      '1.10.10.10',
      `1.${'f'.repeat(17)}.`,
      '1.G.',
      '1..zzzzzzzzzzzz',
    ]) {
      expect(decodeToken(bad), bad).toBeUndefined();
    }
  });
});
