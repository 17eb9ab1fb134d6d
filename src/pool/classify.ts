import type { SessionFeature } from './errors.js';

/*
 * A small, conservative SQL classifier: it decides whether a statement may run on a read replica.
 *
 * It is not a parser. It tokenizes (comments, the four kinds of string literal, quoted
 * identifiers, parameters) and then looks for what makes a statement unsafe on a standby: a
 * command other than SELECT/VALUES/TABLE/WITH/SHOW/EXPLAIN, a data-modifying word anywhere (a CTE's
 * INSERT ... RETURNING), a locking clause (FOR UPDATE / FOR SHARE), SELECT INTO, or a call to a
 * function it does not know to be read-only (nextval, setval, a user function that writes).
 * Every doubt resolves to 'write', which routes to the primary: misrouting a read to the primary
 * costs a little load, misrouting a write to a replica fails the query (or, with a function that
 * reads session state, returns something wrong). Users widen it with `readOnlyFunctions`, or route
 * by hand with `read()` / `{ route }`.
 *
 * What it cannot see: a view or a rule that calls a writing function, and a function listed as
 * read-only that is not. Those need `{ route: 'primary' }`.
 */

/** Where a statement may run: `'read'` on a replica, `'write'` only on the primary. */
export type SqlKind = 'read' | 'write';

/** What {@link classifySql} decided, and why. */
export interface SqlClassification {
  readonly kind: SqlKind;
  /**
   * Why, in a few words: `'select'`, `'show'`, `'explain'`, `'command insert'`,
   * `'locking clause'`, `'select into'`, `'data-modifying update'`, `'function nextval'`,
   * `'unknown function my_fn'`, `'multiple statements'`, `'unparsable'`, `'empty'`,
   * `'backslash in string'`.
   */
  readonly reason: string;
  /** The statement's first keyword, lowercased (`'select'`, `'with'`, `'insert'`, ...); `''` when there is none. */
  readonly command: string;
  /** A session-level feature the statement uses, which PgBouncer transaction pooling breaks. */
  readonly sessionFeature: SessionFeature | undefined;
}

const WORD = 0;
const QIDENT = 1;
const PUNCT = 2;
const OTHER = 3;
type TokenType = 0 | 1 | 2 | 3;

interface Token {
  readonly t: TokenType;
  /** Lowercased word, identifier text, or the punctuation character. */
  readonly v: string;
}

/** Commands that only read. */
const READ_COMMANDS = new Set(['select', 'values', 'table', 'with', 'show']);

/** Words that make a SELECT-like statement unsafe on a replica, wherever they appear. */
const WRITE_WORDS = new Set(['insert', 'update', 'delete', 'merge', 'truncate']);

/** Keywords that may be followed by `(` without being a function call. */
const PAREN_KEYWORDS = new Set([
  'all',
  'and',
  'any',
  'array',
  'as',
  'between',
  'by',
  'case',
  'cube',
  'distinct',
  'else',
  'except',
  'exists',
  'filter',
  'from',
  'group',
  'grouping',
  'having',
  'ilike',
  'in',
  'intersect',
  'is',
  'join',
  'lateral',
  'like',
  'limit',
  'materialized',
  'not',
  'offset',
  'on',
  'operator',
  'or',
  'over',
  'partition',
  'recursive',
  'rollup',
  'row',
  'rows',
  'select',
  'sets',
  'similar',
  'some',
  'tablesample',
  'then',
  'to',
  'union',
  'using',
  'values',
  'when',
  'where',
  'window',
  'with',
  'within',
  // type names with a modifier: varchar(10), numeric(10, 2), timestamp(3) ...
  'bit',
  'char',
  'character',
  'dec',
  'decimal',
  'float',
  'interval',
  'numeric',
  'time',
  'timestamp',
  'timestamptz',
  'timetz',
  'varbit',
  'varchar',
  'varying',
  // TABLESAMPLE methods
  'bernoulli',
  'system',
]);

/** Functions that write, take locks, or read session state: never on a replica. */
const WRITE_FUNCTIONS = new Set([
  'nextval',
  'setval',
  'currval',
  'lastval',
  'set_config',
  'txid_current',
  'pg_current_xact_id',
  'pg_notify',
  'lo_create',
  'lo_creat',
  'lo_import',
  'lo_unlink',
  'lo_put',
  'lo_from_bytea',
  'pg_advisory_lock',
  'pg_advisory_lock_shared',
  'pg_try_advisory_lock',
  'pg_try_advisory_lock_shared',
  'pg_advisory_unlock',
  'pg_advisory_unlock_shared',
  'pg_advisory_unlock_all',
  'pg_advisory_xact_lock',
  'pg_advisory_xact_lock_shared',
  'pg_try_advisory_xact_lock',
  'pg_try_advisory_xact_lock_shared',
  'pg_current_wal_lsn',
  'pg_current_wal_insert_lsn',
  'pg_current_wal_flush_lsn',
  'pg_switch_wal',
  'pg_create_restore_point',
  'pg_terminate_backend',
  'pg_cancel_backend',
  'pg_reload_conf',
  'pg_stat_reset',
  'dblink',
  'dblink_exec',
]);

/** Session-level advisory locks (the `_xact_` variants end with the transaction, so they are fine). */
const SESSION_LOCK_FUNCTIONS = new Set([
  'pg_advisory_lock',
  'pg_advisory_lock_shared',
  'pg_try_advisory_lock',
  'pg_try_advisory_lock_shared',
  'pg_advisory_unlock',
  'pg_advisory_unlock_shared',
  'pg_advisory_unlock_all',
]);

/**
 * Built-in functions known to be read-only and free of session state. Not exhaustive on purpose:
 * an unknown function routes to the primary, and `readOnlyFunctions` adds to this list.
 */
const READ_FUNCTIONS = new Set(
  `abs acos age array_agg array_append array_cat array_dims array_fill array_length array_lower
  array_position array_positions array_prepend array_remove array_replace array_to_json
  array_to_string array_upper ascii asin atan atan2 avg bit_and bit_length bit_or bool bool_and
  bool_or btrim cardinality cast cbrt ceil ceiling char_length character_length chr clock_timestamp
  coalesce col_description concat concat_ws corr cos count covar_pop covar_samp cume_dist
  current_database current_schema current_schemas current_setting date date_bin date_part
  date_trunc daterange decode degrees dense_rank div encode every exp extract first_value floor
  format format_type gcd gen_random_uuid generate_series generate_subscripts greatest has_any_column_privilege
  has_column_privilege has_database_privilege has_schema_privilege has_table_privilege hashtext
  initcap int int2 int4 int4range int8 int8range isempty isfinite json_agg json_array_elements
  json_array_elements_text json_array_length json_build_array json_build_object json_each
  json_each_text json_extract_path json_extract_path_text json_object json_object_agg
  json_object_keys json_populate_record json_populate_recordset json_strip_nulls json_to_record
  json_to_recordset json_typeof jsonb_agg jsonb_array_elements jsonb_array_elements_text
  jsonb_array_length jsonb_build_array jsonb_build_object jsonb_each jsonb_each_text
  jsonb_extract_path jsonb_extract_path_text jsonb_insert jsonb_object jsonb_object_agg
  jsonb_object_keys jsonb_path_exists jsonb_path_match jsonb_path_query jsonb_path_query_array
  jsonb_path_query_first jsonb_populate_record jsonb_populate_recordset jsonb_pretty jsonb_set
  jsonb_set_lax jsonb_strip_nulls jsonb_to_record jsonb_to_recordset jsonb_typeof justify_days
  justify_hours justify_interval lag last_value lcm lead least left length ln localtime
  localtimestamp log log10 lower lower_inf lower_inc lpad ltrim make_date make_interval make_time
  make_timestamp make_timestamptz max md5 min mod mode now nth_value ntile nullif num_nonnulls
  num_nulls numrange obj_description octet_length overlay percent_rank percentile_cont
  percentile_disc pg_backend_pid pg_column_size pg_database_size pg_get_constraintdef
  pg_get_expr pg_get_functiondef pg_get_indexdef pg_get_viewdef pg_indexes_size
  pg_is_in_recovery pg_is_wal_replay_paused pg_last_wal_receive_lsn pg_last_wal_replay_lsn
  pg_last_xact_replay_timestamp pg_postmaster_start_time pg_relation_size pg_size_bytes
  pg_size_pretty pg_sleep pg_table_size pg_total_relation_size pg_typeof phraseto_tsquery pi
  plainto_tsquery position power quote_ident quote_literal quote_nullable radians random rank
  regexp_count regexp_instr regexp_like regexp_match regexp_matches regexp_replace
  regexp_split_to_array regexp_split_to_table regexp_substr repeat replace reverse right round
  row_number row_to_json rpad rtrim setweight sign sin split_part sqrt starts_with
  statement_timestamp stddev stddev_pop stddev_samp string_agg string_to_array string_to_table
  strpos substr substring sum tan text timeofday timezone to_char to_date to_hex to_json to_jsonb
  to_number to_regclass to_timestamp to_tsquery to_tsvector transaction_timestamp translate trim
  trunc ts_headline ts_rank ts_rank_cd tsrange tstzrange unnest upper upper_inf upper_inc uuid
  var_pop var_samp variance version websearch_to_tsquery width_bucket xmlagg`.split(/\s+/),
);

/** Raised inside the tokenizer when the text cannot be tokenized with confidence. */
class Unsure {
  constructor(readonly reason: string) {}
}

function isIdentStart(c: number): boolean {
  return (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || c === 95 || c >= 128;
}

function isIdentPart(c: number): boolean {
  return isIdentStart(c) || (c >= 48 && c <= 57) || c === 36;
}

/** Index just past a single-quoted literal starting at `i` (the quote); backslashes escape when `escapes`. */
function skipString(sql: string, i: number, escapes: boolean): number {
  let j = i + 1;
  for (;;) {
    if (j >= sql.length) throw new Unsure('unparsable');
    const c = sql.charCodeAt(j);
    if (c === 92 /* \ */) {
      // With standard_conforming_strings off, a backslash escapes in plain strings too, and then
      // the statement would not tokenize the way the server reads it: give up.
      if (!escapes) throw new Unsure('backslash in string');
      j += 2;
      continue;
    }
    if (c === 39 /* ' */) {
      if (sql.charCodeAt(j + 1) === 39) {
        j += 2;
        continue;
      }
      return j + 1;
    }
    j++;
  }
}

function tokenize(sql: string): Token[] {
  const tokens: Token[] = [];
  const n = sql.length;
  let i = 0;
  while (i < n) {
    const c = sql.charCodeAt(i);
    // whitespace
    if (c === 32 || (c >= 9 && c <= 13)) {
      i++;
      continue;
    }
    // -- line comment
    if (c === 45 && sql.charCodeAt(i + 1) === 45) {
      const end = sql.indexOf('\n', i);
      i = end === -1 ? n : end + 1;
      continue;
    }
    // /* block comment */, nested as in PostgreSQL
    if (c === 47 && sql.charCodeAt(i + 1) === 42) {
      let depth = 1;
      let j = i + 2;
      while (depth > 0) {
        if (j >= n) throw new Unsure('unparsable');
        const d = sql.charCodeAt(j);
        if (d === 47 && sql.charCodeAt(j + 1) === 42) {
          depth++;
          j += 2;
        } else if (d === 42 && sql.charCodeAt(j + 1) === 47) {
          depth--;
          j += 2;
        } else j++;
      }
      i = j;
      continue;
    }
    if (c === 39 /* ' */) {
      i = skipString(sql, i, false);
      tokens.push({ t: OTHER, v: "'" });
      continue;
    }
    if (c === 34 /* " */) {
      let j = i + 1;
      let text = '';
      for (;;) {
        if (j >= n) throw new Unsure('unparsable');
        const d = sql.charCodeAt(j);
        if (d === 34) {
          if (sql.charCodeAt(j + 1) === 34) {
            text += '"';
            j += 2;
            continue;
          }
          break;
        }
        text += sql[j];
        j++;
      }
      tokens.push({ t: QIDENT, v: text });
      i = j + 1;
      continue;
    }
    if (c === 36 /* $ */) {
      const d = sql.charCodeAt(i + 1);
      if (d >= 48 && d <= 57) {
        // $1: a parameter
        let j = i + 1;
        while (j < n && sql.charCodeAt(j) >= 48 && sql.charCodeAt(j) <= 57) j++;
        tokens.push({ t: OTHER, v: '$' });
        i = j;
        continue;
      }
      // $tag$ ... $tag$ (dollar quoting; the tag may be empty)
      let j = i + 1;
      while (j < n && isIdentPart(sql.charCodeAt(j)) && sql.charCodeAt(j) !== 36) j++;
      if (sql.charCodeAt(j) !== 36) throw new Unsure('unparsable');
      const tag = sql.slice(i, j + 1);
      const end = sql.indexOf(tag, j + 1);
      if (end === -1) throw new Unsure('unparsable');
      tokens.push({ t: OTHER, v: "'" });
      i = end + tag.length;
      continue;
    }
    if (isIdentStart(c)) {
      let j = i + 1;
      while (j < n && isIdentPart(sql.charCodeAt(j))) j++;
      const word = sql.slice(i, j).toLowerCase();
      const next = sql.charCodeAt(j);
      if (next === 39 && (word === 'e' || word === 'b' || word === 'x' || word === 'n')) {
        // E'...' escapes with backslashes; B'...', X'...' and N'...' are plain.
        i = skipString(sql, j, word === 'e');
        tokens.push({ t: OTHER, v: "'" });
        continue;
      }
      if (
        word === 'u' &&
        next === 38 /* & */ &&
        (sql.charCodeAt(j + 1) === 39 || sql.charCodeAt(j + 1) === 34)
      ) {
        // U&'...' or U&"..." (Unicode escapes): rare enough to give up on.
        throw new Unsure('unparsable');
      }
      tokens.push({ t: WORD, v: word });
      i = j;
      continue;
    }
    if (c === 40 || c === 41 || c === 59 || c === 44 || c === 46) {
      // ( ) ; , .
      tokens.push({ t: PUNCT, v: sql[i]! });
      i++;
      continue;
    }
    // numbers, operators, casts, brackets: nothing to decide on
    tokens.push({ t: OTHER, v: sql[i]! });
    i++;
  }
  return tokens;
}

function result(
  kind: SqlKind,
  reason: string,
  command: string,
  sessionFeature?: SessionFeature,
): SqlClassification {
  return { kind, reason, command, sessionFeature };
}

const isWord = (t: Token | undefined, v?: string): boolean =>
  t !== undefined && t.t === WORD && (v === undefined || t.v === v);
const isPunct = (t: Token | undefined, v: string): boolean => t !== undefined && t.t === PUNCT && t.v === v;

/** Index just past the parenthesised group opening at `i`, or `tokens.length` when unbalanced. */
function skipParens(tokens: readonly Token[], i: number): number {
  let depth = 0;
  for (let j = i; j < tokens.length; j++) {
    if (isPunct(tokens[j], '(')) depth++;
    else if (isPunct(tokens[j], ')') && --depth === 0) return j + 1;
  }
  return tokens.length;
}

/** Names of the CTEs of a statement starting with WITH: `name(cols)` is not a function call. */
function cteNames(tokens: readonly Token[]): Set<string> {
  const names = new Set<string>();
  let i = 1;
  if (isWord(tokens[i], 'recursive')) i++;
  for (;;) {
    const name = tokens[i];
    if (name === undefined || (name.t !== WORD && name.t !== QIDENT)) return names;
    names.add(name.v);
    i++;
    if (isPunct(tokens[i], '(')) i = skipParens(tokens, i);
    if (!isWord(tokens[i], 'as')) return names;
    i++;
    if (isWord(tokens[i], 'not')) i++;
    if (isWord(tokens[i], 'materialized')) i++;
    if (!isPunct(tokens[i], '(')) return names;
    i = skipParens(tokens, i);
    if (!isPunct(tokens[i], ',')) return names;
    i++;
  }
}

/** Classifies one statement (no top-level `;` inside). */
function classifyStatement(
  tokens: readonly Token[],
  readOnlyFunctions: ReadonlySet<string>,
): SqlClassification {
  // (SELECT ...) UNION (SELECT ...)
  let start = 0;
  while (isPunct(tokens[start], '(')) start++;
  const first = tokens[start];
  if (first === undefined) return result('write', 'empty', '');
  if (first.t !== WORD) return result('write', 'unparsable', '');
  const command = first.v;

  if (command === 'explain') {
    let i = start + 1;
    if (isPunct(tokens[i], '(')) i = skipParens(tokens, i);
    else
      while (isWord(tokens[i], 'analyze') || isWord(tokens[i], 'analyse') || isWord(tokens[i], 'verbose'))
        i++;
    const inner = classifyStatement(tokens.slice(i), readOnlyFunctions);
    return inner.kind === 'read'
      ? result('read', 'explain', command)
      : result('write', inner.reason, command, inner.sessionFeature);
  }
  if (!READ_COMMANDS.has(command)) return writeCommand(tokens, start, command);
  if (command === 'show') return result('read', 'show', command);

  const ctes = command === 'with' ? cteNames(tokens.slice(start)) : undefined;
  for (let i = start; i < tokens.length; i++) {
    const tok = tokens[i]!;
    if (tok.t === WORD) {
      const v = tok.v;
      if (WRITE_WORDS.has(v)) {
        return result('write', command === 'with' ? `data-modifying ${v}` : `contains ${v}`, command);
      }
      if (v === 'into') return result('write', 'select into', command);
      if (v === 'for') {
        const next = tokens[i + 1];
        if (isWord(next, 'update') || isWord(next, 'share') || isWord(next, 'no') || isWord(next, 'key')) {
          return result('write', 'locking clause', command);
        }
      }
    }
    if ((tok.t === WORD || tok.t === QIDENT) && isPunct(tokens[i + 1], '(')) {
      const prev = tokens[i - 1];
      // `) alias(cols)` and `AS alias(cols)` are column lists, not calls.
      if (isPunct(prev, ')') || isWord(prev, 'as')) continue;
      if (ctes?.has(tok.v)) continue;
      if (tok.t === WORD && PAREN_KEYWORDS.has(tok.v)) continue;
      const name = tok.v;
      if (WRITE_FUNCTIONS.has(name)) {
        return result(
          'write',
          `function ${name}`,
          command,
          SESSION_LOCK_FUNCTIONS.has(name) ? 'advisory-lock' : undefined,
        );
      }
      if (tok.t === WORD && READ_FUNCTIONS.has(name)) continue;
      if (readOnlyFunctions.has(name)) continue;
      return result('write', `unknown function ${name}`, command);
    }
  }
  return result('read', command, command);
}

/** A statement that is not SELECT-like: always the primary; notes the session features it uses. */
function writeCommand(tokens: readonly Token[], start: number, command: string): SqlClassification {
  const second = tokens[start + 1];
  let feature: SessionFeature | undefined;
  switch (command) {
    case 'listen':
    case 'unlisten':
    case 'load':
    case 'reset':
      feature = command;
      break;
    case 'prepare':
      // PREPARE TRANSACTION is two-phase commit, not a prepared statement; it is no better
      // under transaction pooling, but it is not this guard's business.
      if (!isWord(second, 'transaction')) feature = 'prepare';
      break;
    case 'set':
      // SET LOCAL, SET TRANSACTION and SET CONSTRAINTS end with the transaction.
      if (!isWord(second, 'local') && !isWord(second, 'transaction') && !isWord(second, 'constraints')) {
        feature = 'set';
      }
      break;
    case 'declare':
      for (let i = start + 1; i < tokens.length - 1; i++) {
        if (isWord(tokens[i], 'with') && isWord(tokens[i + 1], 'hold')) feature = 'hold-cursor';
      }
      break;
    case 'create': {
      let i = start + 1;
      if (isWord(tokens[i], 'or') && isWord(tokens[i + 1], 'replace')) i += 2;
      if (isWord(tokens[i], 'global') || isWord(tokens[i], 'local')) i++;
      if (isWord(tokens[i], 'temp') || isWord(tokens[i], 'temporary')) feature = 'temp-table';
      break;
    }
  }
  if (feature === undefined) {
    // A session advisory lock may hide in any statement (SELECT is handled by the caller).
    for (let i = start; i < tokens.length - 1; i++) {
      const tok = tokens[i]!;
      if (tok.t === WORD && SESSION_LOCK_FUNCTIONS.has(tok.v) && isPunct(tokens[i + 1], '(')) {
        feature = 'advisory-lock';
        break;
      }
    }
  }
  const reason =
    command === 'begin' ||
    command === 'start' ||
    command === 'commit' ||
    command === 'end' ||
    command === 'rollback' ||
    command === 'abort' ||
    command === 'savepoint' ||
    command === 'release'
      ? 'transaction control'
      : `command ${command}`;
  return result('write', reason, command, feature);
}

const EMPTY_SET: ReadonlySet<string> = new Set();

/**
 * Classifies a statement as `'read'` (may run on a replica) or `'write'` (primary only), the way
 * the cluster routes `query()`. Conservative: anything it cannot vouch for is a write.
 *
 * @param readOnlyFunctions lowercased names of your own functions known to neither write nor read
 *   session state; calls to them no longer force the primary.
 * @example
 * classifySql('SELECT * FROM users WHERE id = $1').kind           // 'read'
 * classifySql('SELECT * FROM jobs FOR UPDATE SKIP LOCKED').kind    // 'write' (locking clause)
 * classifySql("SELECT nextval('ids')").reason                      // 'function nextval'
 * classifySql('WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d').kind // 'write'
 */
export function classifySql(
  sql: string,
  readOnlyFunctions: ReadonlySet<string> = EMPTY_SET,
): SqlClassification {
  let tokens: Token[];
  try {
    tokens = tokenize(sql);
  } catch (e) {
    if (e instanceof Unsure) return result('write', e.reason, firstWord(sql));
    throw e;
  }
  // Split on top-level semicolons; a trailing one is fine.
  const statements: Token[][] = [];
  let from = 0;
  for (let i = 0; i <= tokens.length; i++) {
    if (i === tokens.length || isPunct(tokens[i], ';')) {
      if (i > from) statements.push(tokens.slice(from, i));
      from = i + 1;
    }
  }
  if (statements.length <= 1) return classifyStatement(statements[0] ?? [], readOnlyFunctions);
  // Several statements run in one simple-protocol round trip: always the primary, and the
  // PgBouncer guard must see a session feature in any of them.
  let command = '';
  let feature: SessionFeature | undefined;
  for (const statement of statements) {
    const info = classifyStatement(statement, readOnlyFunctions);
    command ||= info.command;
    feature ??= info.sessionFeature;
  }
  return result('write', 'multiple statements', command, feature);
}

/** The first word of `sql`, for the `command` of a statement that did not tokenize. */
function firstWord(sql: string): string {
  const m = /^[\s(]*([A-Za-z_]+)/.exec(sql);
  return m ? m[1]!.toLowerCase() : '';
}
