/*
 * PostgreSQL WAL positions (LSNs) are 64-bit byte offsets, printed as two hex halves `16/B374D848`.
 * They are kept as bigints: a JS number is exact only up to 2^53 bytes of WAL (8 PiB), which a
 * busy cluster's lifetime can approach, and a position compared wrongly breaks read-your-writes.
 */

const LSN_TEXT = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;

/** Parses `'16/B374D848'` into a bigint; undefined for anything else (including SQL NULL). */
export function parseLsn(text: unknown): bigint | undefined {
  if (typeof text !== 'string') return undefined;
  const m = LSN_TEXT.exec(text);
  if (m === null) return undefined;
  return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
}

/** Formats a position the way PostgreSQL prints it: `'16/B374D848'`. */
export function formatLsn(lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}

/** The larger of two positions, either of which may be unknown. */
export function maxLsn(a: bigint | undefined, b: bigint | undefined): bigint | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return a > b ? a : b;
}
