/*
 * Which replica serves a read: a pure function of the replicas' state, so that the property tests
 * can check it against a model. Everything that needs I/O (health, lag, breaker state) has been
 * folded into `routable` and `replayLsn` before it gets here.
 */

/** What routing needs to know of a replica. */
export interface RouteCandidate {
  /** Probed, not ejected, breaker not open. */
  readonly routable: boolean;
  /** The last replay position seen (health round or on-demand refresh); undefined if never seen. */
  readonly replayLsn: bigint | undefined;
  /** Connections in use plus callers waiting: lower is better. */
  readonly load: number;
}

/** No replica is routable: the read goes to the primary. */
export const NO_REPLICA = -1;
/** Some replica is routable but none has replayed the session's position yet: read-your-writes sends the read to the primary. */
export const NOT_CAUGHT_UP = -2;

/**
 * Picks the replica for a read: among the routable replicas that have replayed `minLsn` (all
 * routable ones when `minLsn` is undefined), the least loaded; ties go to the first at or after
 * `cursor` (mod the count), so equal replicas take turns. Returns its index, {@link NO_REPLICA} or
 * {@link NOT_CAUGHT_UP}.
 */
export function chooseReplica(
  candidates: readonly RouteCandidate[],
  minLsn: bigint | undefined,
  cursor: number,
): number {
  const n = candidates.length;
  let best = NO_REPLICA;
  let bestLoad = Number.POSITIVE_INFINITY;
  let anyRoutable = false;
  const start = n === 0 ? 0 : cursor % n;
  for (let k = 0; k < n; k++) {
    const i = start + k < n ? start + k : start + k - n;
    const c = candidates[i]!;
    if (!c.routable) continue;
    anyRoutable = true;
    if (minLsn !== undefined && (c.replayLsn === undefined || c.replayLsn < minLsn)) continue;
    const load = c.load;
    if (load < bestLoad) {
      best = i;
      bestLoad = load;
    }
  }
  if (best !== NO_REPLICA) return best;
  return anyRoutable ? NOT_CAUGHT_UP : NO_REPLICA;
}
