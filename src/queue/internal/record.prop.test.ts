import { fc, test } from '@fast-check/vitest';
import { describe, expect } from 'vitest';
import { DEFAULT_JOB_OPTIONS, decodeRecord, headerTail, withHeaders } from './record.js';

/*
 * Headers a tracing bridge gives a job travel in its record: they come back unchanged with the
 * payload, only their string values are kept, and a record without headers is the record it
 * always was.
 */

const payload = fc.jsonValue().map((v) => JSON.parse(JSON.stringify(v)) as unknown);
const record = (tail: string, value: unknown) => `1700000000000${tail}${JSON.stringify(value)}`;

describe('job record headers', () => {
  test.prop([fc.dictionary(fc.string(), fc.string(), { maxKeys: 8 }), payload])(
    'headers written with a job come back unchanged, and so does its payload',
    (headers, value) => {
      const tail = headerTail(DEFAULT_JOB_OPTIONS);
      const decoded = decodeRecord(record(withHeaders(tail, headers), value));
      expect(decoded.payload).toEqual(value);
      expect(decoded.options).toEqual({ ...DEFAULT_JOB_OPTIONS });
      expect(decoded.headers).toEqual(Object.keys(headers).length === 0 ? undefined : headers);
    },
  );

  test.prop([fc.dictionary(fc.string(), fc.oneof(fc.integer(), fc.boolean(), fc.constant(null))), payload])(
    'only string values are kept: with none, the record is unchanged',
    (headers, value) => {
      const tail = headerTail(DEFAULT_JOB_OPTIONS);
      expect(withHeaders(tail, headers)).toBe(tail);
      expect(decodeRecord(record(tail, value)).headers).toBeUndefined();
    },
  );

  test.prop([payload])('headers beyond 8 KiB are dropped, never failing the add', (value) => {
    const tail = headerTail(DEFAULT_JOB_OPTIONS);
    const big = withHeaders(tail, { traceparent: 'x'.repeat(9000) });
    expect(big).toBe(tail);
    expect(decodeRecord(record(big, value)).payload).toEqual(value);
  });
});
