import { describe, expect, it } from 'vitest';
import { fencePrefix, fenceSchemaSql } from './fence.js';
import { pgTableCopier } from './pg-copy.js';

// The copier's work is tested against PostgreSQL (test/integration/shard-router-move.int.test.ts);
// here, what it refuses before touching a database.
describe('pgTableCopier options', () => {
  it('needs exactly one way to find a shard per table', () => {
    expect(() => pgTableCopier({ tables: [{ table: 'users' }] })).toThrow(
      /exactly one of logicalColumn, idColumn, keyColumn/,
    );
    expect(() =>
      pgTableCopier({ tables: [{ table: 'users', keyColumn: 'id', logicalColumn: 'l' }] }),
    ).toThrow(/exactly one/);
    expect(() => pgTableCopier({ tables: [] })).toThrow(/tables/);
  });

  it('takes SQL identifiers only, naming the option', () => {
    expect(() => pgTableCopier({ tables: [{ table: 'users; DROP TABLE x', keyColumn: 'id' }] })).toThrow(
      /Invalid option "tables\[0\]\.table"/,
    );
    expect(() => pgTableCopier({ tables: [{ table: 'app.users', keyColumn: 'id"--' }] })).toThrow(
      /tables\[0\]\.keyColumn/,
    );
    expect(() => pgTableCopier({ tables: [{ table: 'users', idColumn: 'id', primaryKey: [] }] })).toThrow(
      /primaryKey/,
    );
    expect(() => pgTableCopier({ tables: [{ table: 'users', idColumn: 'id' }], batchSize: 0 })).toThrow(
      /batchSize/,
    );
    expect(() => pgTableCopier({ tables: [{ table: 'users', idColumn: 'id', nope: 1 } as never] })).toThrow(
      /nope/,
    );
    expect(
      pgTableCopier({ tables: [{ table: 'app.users', keyColumn: 'user_id', primaryKey: ['user_id'] }] }).copy,
    ).toBeTypeOf('function');
  });
});

describe('fences', () => {
  it('takes a lowercase prefix, and builds every object under it', () => {
    expect(fencePrefix(undefined)).toBe('buttress_shard');
    expect(() => fencePrefix('Bad-Prefix')).toThrow(/fencePrefix/);
    const sql = fenceSchemaSql('app_x');
    for (const name of [
      'app_x_fence',
      'app_x_changes',
      'app_x_enter',
      'app_x_capture',
      'buttress.capture_app_x',
    ]) {
      expect(sql).toContain(name);
    }
    expect(sql).toContain('FOR SHARE');
  });
});
