#!/usr/bin/env bash
# Verify, and start where needed, the services the tests talk to (see DESIGN.md, "Services").
#
#   bash scripts/services.sh             PostgreSQL (127.0.0.1:5432) + Redis (127.0.0.1:6379)
#   bash scripts/services.sh --cluster   ... + Redis Cluster, 3 masters on 127.0.0.1:7000-7002
#   bash scripts/services.sh --replica   ... + PostgreSQL streaming read replica on 127.0.0.1:5433
#   bash scripts/services.sh --shards    ... + databases shard_0 .. shard_3 on the primary
#   bash scripts/services.sh --all       everything above
#
# Idempotent: what is already up is only checked (a fast no-op). Prints one line per service,
# saying whether it was already up or what was started. Exits non-zero, with the service's log
# tail, when a service does not answer within SERVICES_TIMEOUT seconds (default 30).
set -euo pipefail

TIMEOUT="${SERVICES_TIMEOUT:-30}"
PGHOST_ADDR=127.0.0.1
PG_PORT=5432
REPLICA_PORT=5433
REDIS_PORT=6379
CLUSTER_PORTS=(7000 7001 7002)
CLUSTER_DIR="${BUTTRESS_REDIS_CLUSTER_DIR:-/var/lib/redis/buttress-cluster}"
SHARD_DBS=(shard_0 shard_1 shard_2 shard_3)

# ---------------------------------------------------------------------------------------------
# helpers

log() { printf 'services: %s\n' "$*"; }
die() {
  printf 'services: ERROR: %s\n' "$*" >&2
  exit 1
}

# Show the last lines of a log file on stderr (best effort), to make a failure readable.
show_log() {
  local file="$1"
  if [[ -r "$file" ]]; then
    printf -- '--- last lines of %s ---\n' "$file" >&2
    tail -n 30 "$file" >&2 || true
  fi
}

# wait_for SECONDS COMMAND...: run COMMAND until it succeeds, for at most SECONDS seconds.
wait_for() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      return 1
    fi
    sleep 0.2
  done
}

# Run a command as the postgres OS user (we are usually root here; CI runs as root).
as_postgres() {
  if [[ "$(id -un)" == postgres ]]; then
    "$@"
  elif [[ "$(id -u)" == 0 ]]; then
    runuser -u postgres -- "$@"
  else
    sudo -n -u postgres -- "$@"
  fi
}

pg_version() {
  local versions
  versions="$(ls /etc/postgresql 2>/dev/null || true)"
  [[ -n "$versions" ]] || die "no PostgreSQL cluster under /etc/postgresql"
  # Normally one version; if several, take the newest.
  printf '%s\n' "$versions" | sort -V | tail -n 1
}

psql_at() { # psql_at PORT DB SQL: one unaligned value, no headers
  psql -X -h "$PGHOST_ADDR" -p "$1" -U postgres -d "$2" -Atqc "$3"
}

pg_answers() { # pg_answers PORT: ready and executes a query
  pg_isready -q -h "$PGHOST_ADDR" -p "$1" -U postgres && psql_at "$1" postgres 'SELECT 1' >/dev/null
}

redis_answers() { # redis_answers PORT
  [[ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" == PONG ]]
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL primary, 127.0.0.1:5432

ensure_postgres() {
  if pg_answers "$PG_PORT"; then
    log "postgresql 127.0.0.1:$PG_PORT: already up"
    return
  fi
  local v
  v="$(pg_version)"
  log "postgresql 127.0.0.1:$PG_PORT: not answering, starting cluster $v/main"
  # Exit code 2 means "already running" (e.g. still starting up): the wait below decides.
  pg_ctlcluster --skip-systemctl-redirect "$v" main start || true
  if ! wait_for "$TIMEOUT" pg_answers "$PG_PORT"; then
    show_log "/var/log/postgresql/postgresql-$v-main.log"
    die "postgresql did not answer on 127.0.0.1:$PG_PORT within ${TIMEOUT}s"
  fi
  log "postgresql 127.0.0.1:$PG_PORT: STARTED"
}

# ---------------------------------------------------------------------------------------------
# Redis, 127.0.0.1:6379

ensure_redis() {
  if redis_answers "$REDIS_PORT"; then
    log "redis 127.0.0.1:$REDIS_PORT: already up"
    return
  fi
  log "redis 127.0.0.1:$REDIS_PORT: not answering, starting redis-server"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log ||
    {
      show_log /var/log/redis/ci.log
      die "redis-server failed to start"
    }
  if ! wait_for "$TIMEOUT" redis_answers "$REDIS_PORT"; then
    show_log /var/log/redis/ci.log
    die "redis did not answer on 127.0.0.1:$REDIS_PORT within ${TIMEOUT}s"
  fi
  log "redis 127.0.0.1:$REDIS_PORT: STARTED"
}

# ---------------------------------------------------------------------------------------------
# Redis Cluster, 3 masters on 127.0.0.1:7000-7002, no replicas

cluster_info_field() { # cluster_info_field PORT FIELD
  redis-cli -h 127.0.0.1 -p "$1" cluster info 2>/dev/null | tr -d '\r' | sed -n "s/^$2://p"
}

cluster_all_blank() { # every node knows only itself and serves no slot
  local p
  for p in "${CLUSTER_PORTS[@]}"; do
    [[ "$(cluster_info_field "$p" cluster_known_nodes)" == 1 ]] || return 1
    [[ "$(cluster_info_field "$p" cluster_slots_assigned)" == 0 ]] || return 1
  done
}

cluster_healthy() {
  local p
  for p in "${CLUSTER_PORTS[@]}"; do
    [[ "$(cluster_info_field "$p" cluster_state)" == ok ]] || return 1
    [[ "$(cluster_info_field "$p" cluster_known_nodes)" == "${#CLUSTER_PORTS[@]}" ]] || return 1
    [[ "$(cluster_info_field "$p" cluster_slots_ok)" == 16384 ]] || return 1
  done
}

ensure_redis_cluster() {
  if cluster_healthy; then
    log "redis cluster 127.0.0.1:${CLUSTER_PORTS[0]}-${CLUSTER_PORTS[-1]}: already up"
    return
  fi
  mkdir -p "$CLUSTER_DIR"
  local p started=()
  for p in "${CLUSTER_PORTS[@]}"; do
    if redis_answers "$p"; then
      [[ "$(redis-cli -h 127.0.0.1 -p "$p" info cluster | tr -d '\r' | sed -n 's/^cluster_enabled://p')" == 1 ]] ||
        die "something that is not a cluster-enabled redis answers on 127.0.0.1:$p"
      continue
    fi
    # A node that is not running has nothing worth keeping (no persistence): start it blank,
    # so that a stale nodes file from an earlier run cannot half-join an old cluster.
    rm -f "$CLUSTER_DIR/nodes-$p.conf"
    redis-server --port "$p" --cluster-enabled yes --cluster-config-file "$CLUSTER_DIR/nodes-$p.conf" \
      --daemonize yes --save "" --appendonly no --dir "$CLUSTER_DIR" --bind 127.0.0.1 \
      --logfile "$CLUSTER_DIR/redis-$p.log" ||
      {
        show_log "$CLUSTER_DIR/redis-$p.log"
        die "redis-server (cluster node $p) failed to start"
      }
    started+=("$p")
  done
  for p in "${CLUSTER_PORTS[@]}"; do
    if ! wait_for "$TIMEOUT" redis_answers "$p"; then
      show_log "$CLUSTER_DIR/redis-$p.log"
      die "redis cluster node did not answer on 127.0.0.1:$p within ${TIMEOUT}s"
    fi
  done
  ((${#started[@]} == 0)) || log "redis cluster nodes started: ${started[*]}"

  # Nodes that already hold a cluster's state may still be converging: give them a moment first.
  if ((${#started[@]} == 0)) && ! cluster_all_blank && wait_for 10 cluster_healthy; then
    log "redis cluster 127.0.0.1:${CLUSTER_PORTS[0]}-${CLUSTER_PORTS[-1]}: up"
    return
  fi

  # (Re)create: every node must be empty and know only itself. Nodes left from a broken cluster
  # are test-only and disposable: flush and hard-reset them.
  local addrs=()
  for p in "${CLUSTER_PORTS[@]}"; do
    addrs+=("127.0.0.1:$p")
    if [[ "$(cluster_info_field "$p" cluster_known_nodes)" != 1 ||
      "$(cluster_info_field "$p" cluster_slots_assigned)" != 0 ]]; then
      log "redis cluster node $p holds old cluster state: FLUSHALL + CLUSTER RESET HARD"
      redis-cli -h 127.0.0.1 -p "$p" flushall >/dev/null
      redis-cli -h 127.0.0.1 -p "$p" cluster reset hard >/dev/null
    fi
  done
  local out
  if ! out="$(redis-cli --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes 2>&1)"; then
    printf '%s\n' "$out" >&2
    die "redis-cli --cluster create failed"
  fi
  if ! wait_for "$TIMEOUT" cluster_healthy; then
    for p in "${CLUSTER_PORTS[@]}"; do redis-cli -h 127.0.0.1 -p "$p" cluster info >&2 || true; done
    die "redis cluster did not reach cluster_state:ok within ${TIMEOUT}s"
  fi
  log "redis cluster 127.0.0.1:${CLUSTER_PORTS[0]}-${CLUSTER_PORTS[-1]}: CREATED"
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL streaming read replica, 127.0.0.1:5433

replica_streaming() {
  [[ "$(psql_at "$REPLICA_PORT" postgres 'SELECT pg_is_in_recovery()' 2>/dev/null)" == t ]] &&
    [[ "$(psql_at "$REPLICA_PORT" postgres 'SELECT status FROM pg_stat_wal_receiver' 2>/dev/null)" == streaming ]]
}

ensure_pg_replica() {
  if replica_streaming; then
    log "postgresql replica 127.0.0.1:$REPLICA_PORT: already up (streaming)"
    return
  fi
  local v
  v="$(pg_version)"
  local dir="${BUTTRESS_PG_REPLICA_DIR:-/var/lib/postgresql/$v/buttress-replica-$REPLICA_PORT}"
  local logfile="/var/log/postgresql/postgresql-$v-buttress-replica.log"
  local pg_ctl="/usr/lib/postgresql/$v/bin/pg_ctl"
  local hba
  hba="$(psql_at "$PG_PORT" postgres 'SHOW hba_file')"

  if pg_isready -q -h "$PGHOST_ADDR" -p "$REPLICA_PORT"; then
    # Up but not (yet) streaming: maybe just started. Wait, and fail if it is something else.
    if [[ "$(psql_at "$REPLICA_PORT" postgres 'SELECT pg_is_in_recovery()' 2>/dev/null)" != t ]]; then
      die "a PostgreSQL that is not a standby answers on 127.0.0.1:$REPLICA_PORT"
    fi
    if wait_for "$TIMEOUT" replica_streaming; then
      log "postgresql replica 127.0.0.1:$REPLICA_PORT: up (streaming)"
      return
    fi
    show_log "$logfile"
    die "the standby on 127.0.0.1:$REPLICA_PORT runs but does not stream from the primary"
  fi

  # Allow replication connections from 127.0.0.1 on the primary.
  if ! grep -Eq '^[[:space:]]*host[[:space:]]+replication[[:space:]]+all[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust' "$hba"; then
    printf 'host replication all 127.0.0.1/32 trust\n' >>"$hba"
    psql_at "$PG_PORT" postgres 'SELECT pg_reload_conf()' >/dev/null
    log "pg_hba.conf: added 'host replication all 127.0.0.1/32 trust' and reloaded"
    sleep 0.3 # the reload is asynchronous
  fi

  # A replica that is not running is rebuilt from a fresh base backup (about 2 s): a stopped one
  # may have fallen behind WAL the primary has already recycled.
  if [[ -e "$dir" ]]; then
    if [[ -n "$(ls -A "$dir")" && ! -e "$dir/standby.signal" ]]; then
      die "$dir exists and is not a standby data directory; refusing to remove it"
    fi
    if [[ -e "$dir/postmaster.pid" ]]; then
      as_postgres "$pg_ctl" -D "$dir" stop -m immediate >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
  fi
  install -d -o postgres -g postgres -m 700 "$dir"
  log "postgresql replica: pg_basebackup into $dir"
  as_postgres pg_basebackup -h "$PGHOST_ADDR" -p "$PG_PORT" -U postgres -D "$dir" -R -X stream -c fast ||
    die "pg_basebackup failed"
  as_postgres touch "$dir/postgresql.conf"
  if ! as_postgres "$pg_ctl" -D "$dir" -l "$logfile" -w -t "$TIMEOUT" \
    -o "-p $REPLICA_PORT -c hba_file=$hba -c unix_socket_directories=/tmp -c listen_addresses=127.0.0.1" \
    start >/dev/null; then
    show_log "$logfile"
    die "pg_ctl could not start the replica on 127.0.0.1:$REPLICA_PORT"
  fi
  if ! wait_for "$TIMEOUT" replica_streaming; then
    show_log "$logfile"
    die "the replica on 127.0.0.1:$REPLICA_PORT did not start streaming within ${TIMEOUT}s"
  fi
  log "postgresql replica 127.0.0.1:$REPLICA_PORT: STARTED (streaming from :$PG_PORT; log $logfile)"
}

# ---------------------------------------------------------------------------------------------
# Shard databases shard_0 .. shard_3 on the primary

ensure_shard_dbs() {
  local db created=()
  for db in "${SHARD_DBS[@]}"; do
    if [[ "$(psql_at "$PG_PORT" postgres "SELECT 1 FROM pg_database WHERE datname = '$db'")" != 1 ]]; then
      createdb -h "$PGHOST_ADDR" -p "$PG_PORT" -U postgres "$db"
      created+=("$db")
    fi
  done
  if ((${#created[@]} == 0)); then
    log "shard databases ${SHARD_DBS[*]}: already exist"
  else
    log "shard databases: CREATED ${created[*]}"
  fi
}

# ---------------------------------------------------------------------------------------------

usage() {
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
}

main() {
  local cluster=0 replica=0 shards=0
  while (($#)); do
    case "$1" in
    --cluster) cluster=1 ;;
    --replica) replica=1 ;;
    --shards) shards=1 ;;
    --all) cluster=1 replica=1 shards=1 ;;
    -h | --help)
      usage
      return 0
      ;;
    *)
      usage >&2
      die "unknown option: $1"
      ;;
    esac
    shift
  done

  ensure_postgres
  ensure_redis
  ((shards == 0)) || ensure_shard_dbs
  ((replica == 0)) || ensure_pg_replica
  ((cluster == 0)) || ensure_redis_cluster
}

main "$@"
