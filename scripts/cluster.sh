#!/usr/bin/env bash
# Local PostgreSQL 15 primary plus one streaming replica on loopback, for pgsplit's tests.
#
#   scripts/cluster.sh start     create (first time) or start both servers; no-op if running
#   scripts/cluster.sh stop      stop both servers (fast shutdown)
#   scripts/cluster.sh restart   stop, then start
#   scripts/cluster.sh status    print both servers' state; non-zero exit if either is down
#   scripts/cluster.sh env       print `export` lines for the tests: eval "$(scripts/cluster.sh env)"
#
# Settings (environment):
#   PGSPLIT_CLUSTER_DIR   base directory (default /tmp/pgsplit-cluster): primary/, replica/,
#                         logs and the unix sockets of both servers
#   PGSPLIT_PRIMARY_PORT  default 15432
#   PGSPLIT_REPLICA_PORT  default 15433
#
# Run as root, the servers run as the `postgres` OS user (via runuser); run as any other user,
# they run as that user. Roles (all passwords equal the role name):
#   postgres    superuser, SCRAM
#   app         SCRAM, owns database `app`
#   app_md5     password stored as md5, logs in with md5
#   app_trust   no password, trusted on loopback
#   replicator  REPLICATION, SCRAM
set -euo pipefail

PG_MAJOR=15
HOST=127.0.0.1
BASE_DIR=$(realpath -m -- "${PGSPLIT_CLUSTER_DIR:-/tmp/pgsplit-cluster}")
PRIMARY_PORT=${PGSPLIT_PRIMARY_PORT:-15432}
REPLICA_PORT=${PGSPLIT_REPLICA_PORT:-15433}
PRIMARY_DIR=$BASE_DIR/primary
REPLICA_DIR=$BASE_DIR/replica
PRIMARY_LOG=$BASE_DIR/primary.log
REPLICA_LOG=$BASE_DIR/replica.log
PASSFILE=$BASE_DIR/pgpass
# Written last by a successful setup step, so a half-made directory is recognised and redone.
READY_MARK=pgsplit-ready
WAIT_SECONDS=${PGSPLIT_CLUSTER_WAIT_SECONDS:-120}

# Libpq settings of the caller (PGHOST, PGUSER, PGSSLMODE, ...) must not redirect our own psql
# calls; every call below names its host, port, user and database.
while read -r var; do
    [[ $var == PGSPLIT_* ]] || unset "$var"
done < <(compgen -e | grep '^PG' || true)

# The servers' commands run in a directory the postgres user may enter, whatever the caller's.
cd /

log() { printf '[cluster] %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

if [[ $(id -u) -eq 0 ]]; then
    OS_USER=postgres
else
    OS_USER=$(id -un)
fi

# Runs a command as the OS user that owns the cluster.
as_owner() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u "$OS_USER" -- "$@"
    else
        "$@"
    fi
}

# Sets BINDIR if PostgreSQL 15's server binaries are installed.
find_postgres() {
    local bindir=/usr/lib/postgresql/$PG_MAJOR/bin
    [[ -x $bindir/postgres && -x $bindir/pg_ctl && -x $bindir/pg_basebackup ]] || return 1
    BINDIR=$bindir
}

# Installs PostgreSQL 15 if its server binaries are missing (fresh CI machines have only psql).
ensure_postgres() {
    if ! find_postgres; then
        [[ $(id -u) -eq 0 ]] || die "PostgreSQL $PG_MAJOR server is missing and installing it needs root"
        log "installing postgresql-$PG_MAJOR and postgresql-contrib"
        (
            # Debian would start its own cluster on port 5432; a policy-rc.d answering 101 stops
            # package scripts from starting services while we install (one already there is kept).
            if [[ ! -e /usr/sbin/policy-rc.d ]]; then
                trap 'rm -f /usr/sbin/policy-rc.d' EXIT
                printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
                chmod 0755 /usr/sbin/policy-rc.d
            fi
            export DEBIAN_FRONTEND=noninteractive
            apt-get -o DPkg::Lock::Timeout=600 update -qq
            apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
                "postgresql-$PG_MAJOR" postgresql-contrib </dev/null
        )
        find_postgres || die "no PostgreSQL $PG_MAJOR server binaries after installing them"
    fi
    id "$OS_USER" >/dev/null 2>&1 || die "OS user $OS_USER does not exist"
}

pg() { as_owner "$BINDIR/$1" "${@:2}"; }

# psql as the superuser over the unix socket (peer authentication, see pg_hba.conf below).
psql_socket() {
    local port=$1 db=$2
    shift 2
    as_owner "$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$BASE_DIR" -p "$port" -U postgres -d "$db" "$@"
}

# One value from a query, or empty output if the server cannot be asked.
query_value() {
    psql_socket "$1" "$2" -At -c "$3" 2>/dev/null || true
}

is_running() { [[ -d $1 ]] && pg pg_ctl status -D "$1" >/dev/null 2>&1; }

is_ready() { "$BINDIR/pg_isready" -q -h "$HOST" -p "$1" -U postgres -d postgres -t 2 >/dev/null 2>&1; }

wait_ready() {
    local name=$1 port=$2 i
    for ((i = 0; i < WAIT_SECONDS; i++)); do
        is_ready "$port" && return 0
        sleep 1
    done
    die "$name on port $port does not accept connections after ${WAIT_SECONDS}s"
}

# Writes stdin to a file owned by the cluster's OS user.
write_owned() { as_owner tee "$1" >/dev/null; }

sql_literal() { printf "'%s'" "${1//\'/\'\'}"; }

system_identifier() {
    pg pg_controldata "$1" 2>/dev/null | sed -n 's/^Database system identifier: *//p'
}

start_server() {
    local name=$1 dir=$2 logfile=$3 port=$4
    if is_running "$dir"; then
        return 0
    fi
    log "starting $name on $HOST:$port"
    if ! pg pg_ctl start -D "$dir" -l "$logfile" -w -t "$WAIT_SECONDS" >/dev/null; then
        log "$name failed to start; last lines of $logfile:"
        tail -n 30 "$logfile" >&2 || true
        exit 1
    fi
}

stop_server() {
    local name=$1 dir=$2
    if is_running "$dir"; then
        log "stopping $name"
        pg pg_ctl stop -D "$dir" -m fast -w -t "$WAIT_SECONDS" >/dev/null
    fi
}

prepare_base_dir() {
    if [[ $(id -u) -eq 0 ]]; then
        install -d -o "$OS_USER" -g "$(id -gn "$OS_USER")" -m 0755 "$BASE_DIR"
    else
        install -d -m 0755 "$BASE_DIR"
    fi
    as_owner test -w "$BASE_DIR" || die "$BASE_DIR is not writable by $OS_USER"
    # Only the replication password: the replica's primary_conninfo points here.
    printf '%s:%s:*:replicator:replicator\n' "$HOST" "$PRIMARY_PORT" | write_owned "$PASSFILE"
    as_owner chmod 0600 "$PASSFILE"
}

# Settings shared by both servers; pg_basebackup copies this file to the replica.
write_common_config() {
    write_owned "$PRIMARY_DIR/pgsplit.conf" <<EOF
# pgsplit test cluster: settings shared by primary and replica (written by scripts/cluster.sh).
listen_addresses = '$HOST'
unix_socket_directories = $(sql_literal "$BASE_DIR")
max_connections = 400
shared_buffers = 128MB
password_encryption = 'scram-sha-256'

wal_level = logical
max_wal_senders = 10
max_replication_slots = 10
wal_keep_size = 256MB
hot_standby = on
hot_standby_feedback = on

shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.track = all
track_io_timing = on
log_min_duration_statement = -1

# A throwaway test cluster: durability is traded for speed. Never use these settings for data
# that matters; a crash of the machine can corrupt this cluster.
fsync = off
full_page_writes = off
# synchronous_commit stays on (the default): with it off, a commit's WAL reaches the replica only at
# the WAL writer's next round (up to wal_writer_delay, 200 ms), which no production default does and
# which made every read of a just-written table wait. With fsync off a commit's flush costs nothing.
synchronous_commit = on

# Per-server settings (port, name) come last.
include 'pgsplit-node.conf'
EOF
}

write_node_config() {
    local dir=$1 port=$2 name=$3
    write_owned "$dir/pgsplit-node.conf" <<EOF
# pgsplit test cluster: settings of this server only (written by scripts/cluster.sh).
port = $port
cluster_name = '$name'
EOF
}

write_hba() {
    write_owned "$PRIMARY_DIR/pg_hba.conf" <<EOF
# pgsplit test cluster (written by scripts/cluster.sh). Loopback TCP and the local socket only.
# TYPE  DATABASE     USER        ADDRESS        METHOD
# The OS user running the servers (and root) is the superuser on the socket without a password:
# peer authentication through the map in pg_ident.conf, so other OS users cannot do the same.
local   all          postgres                   peer map=pgsplit
local   all          app_trust                  trust
local   all          app_md5                    md5
local   all          all                        scram-sha-256
host    replication  replicator  $HOST/32   scram-sha-256
host    all          app_trust   $HOST/32   trust
host    all          app_md5     $HOST/32   md5
host    all          all         $HOST/32   scram-sha-256
EOF
    {
        echo "# MAPNAME  SYSTEM-USERNAME  PG-USERNAME"
        echo "pgsplit    $OS_USER         postgres"
        [[ $OS_USER == root ]] || echo "pgsplit    root             postgres"
    } | write_owned "$PRIMARY_DIR/pg_ident.conf"
}

init_primary() {
    if [[ -d $PRIMARY_DIR && ! -f $PRIMARY_DIR/$READY_MARK ]]; then
        is_running "$PRIMARY_DIR" && stop_server primary "$PRIMARY_DIR"
        log "removing half-made $PRIMARY_DIR"
        rm -rf -- "$PRIMARY_DIR"
    fi
    [[ -d $PRIMARY_DIR ]] && return 0

    # A replica of an earlier primary can never stream from a new one.
    if [[ -d $REPLICA_DIR ]]; then
        stop_server replica "$REPLICA_DIR"
        rm -rf -- "$REPLICA_DIR"
    fi
    rm -f -- "$BASE_DIR/$READY_MARK"

    log "initdb $PRIMARY_DIR"
    pg initdb -D "$PRIMARY_DIR" -U postgres -E UTF8 --locale=C.UTF-8 \
        --auth-local=peer --auth-host=scram-sha-256 --no-sync >/dev/null
    write_common_config
    write_node_config "$PRIMARY_DIR" "$PRIMARY_PORT" pgsplit_primary
    write_hba
    echo "include 'pgsplit.conf'" | as_owner tee -a "$PRIMARY_DIR/postgresql.conf" >/dev/null
    as_owner touch "$PRIMARY_DIR/$READY_MARK"
}

# Roles, database and extensions; every statement is idempotent.
provision_primary() {
    log "creating roles, database app and extensions"
    psql_socket "$PRIMARY_PORT" postgres <<'SQL'
SET password_encryption = 'scram-sha-256';
DO $$
DECLARE r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['app', 'app_md5', 'app_trust', 'replicator'] LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I LOGIN', r);
        END IF;
    END LOOP;
END
$$;
ALTER ROLE postgres PASSWORD 'postgres';
ALTER ROLE app LOGIN PASSWORD 'app';
ALTER ROLE app_trust LOGIN PASSWORD NULL;
ALTER ROLE replicator LOGIN REPLICATION PASSWORD 'replicator';
SET password_encryption = 'md5';
ALTER ROLE app_md5 LOGIN PASSWORD 'app_md5';
RESET password_encryption;
SELECT 'CREATE DATABASE app OWNER app'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'app') \gexec
GRANT ALL ON DATABASE app TO app_md5, app_trust;
GRANT app TO app_md5, app_trust;
SQL
    psql_socket "$PRIMARY_PORT" app <<'SQL'
GRANT ALL ON SCHEMA public TO app_md5, app_trust;
-- Tables the other two users create are usable by app as well.
ALTER DEFAULT PRIVILEGES FOR ROLE app_md5, app_trust IN SCHEMA public
    GRANT ALL ON TABLES TO app;
ALTER DEFAULT PRIVILEGES FOR ROLE app_md5, app_trust IN SCHEMA public
    GRANT ALL ON SEQUENCES TO app;
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
SELECT 'CREATE EXTENSION IF NOT EXISTS postgis'
WHERE EXISTS (SELECT FROM pg_available_extensions WHERE name = 'postgis') \gexec
SQL
    # Check the stored forms: the proxy's md5 and SCRAM paths are tested against these users.
    local forms
    forms=$(query_value "$PRIMARY_PORT" postgres \
        "SELECT string_agg(rolname || '=' || left(rolpassword, 3), ',' ORDER BY rolname)
         FROM pg_authid WHERE rolname IN ('app', 'app_md5', 'postgres', 'replicator')")
    [[ $forms == "app=SCR,app_md5=md5,postgres=SCR,replicator=SCR" ]] ||
        die "unexpected password forms: $forms"
    as_owner touch "$BASE_DIR/$READY_MARK"
}

init_replica() {
    # A replica cloned from another primary (the primary was recreated) is rebuilt.
    if [[ -f $REPLICA_DIR/$READY_MARK ]] &&
        [[ $(system_identifier "$REPLICA_DIR") != "$(system_identifier "$PRIMARY_DIR")" ]]; then
        stop_server replica "$REPLICA_DIR"
        log "replica belongs to an earlier primary; rebuilding it"
        rm -rf -- "$REPLICA_DIR"
    fi
    if [[ -d $REPLICA_DIR && ! -f $REPLICA_DIR/$READY_MARK ]]; then
        is_running "$REPLICA_DIR" && stop_server replica "$REPLICA_DIR"
        log "removing half-made $REPLICA_DIR"
        rm -rf -- "$REPLICA_DIR"
    fi
    [[ -d $REPLICA_DIR ]] && return 0

    log "pg_basebackup from $HOST:$PRIMARY_PORT into $REPLICA_DIR"
    as_owner env PGPASSFILE="$PASSFILE" "$BINDIR/pg_basebackup" -D "$REPLICA_DIR" \
        -R -X stream -c fast --no-sync -h "$HOST" -p "$PRIMARY_PORT" -U replicator -w
    # pg_basebackup copied the primary's marker and node settings; replace them.
    as_owner rm -f "$REPLICA_DIR/$READY_MARK"
    write_node_config "$REPLICA_DIR" "$REPLICA_PORT" pgsplit_replica
    [[ -f $REPLICA_DIR/standby.signal ]] || die "pg_basebackup -R wrote no standby.signal"
    as_owner touch "$REPLICA_DIR/$READY_MARK"
}

# Waits until the replica streams from the primary and has replayed everything the primary had
# written when the wait began (so the roles, database and extensions are there).
wait_replica_caught_up() {
    local target i streaming lag
    # A fresh WAL record, so the target is the end of a record the replica will replay (the bare
    # insert position can sit just past a page header that no record has reached yet).
    target=$(query_value "$PRIMARY_PORT" postgres \
        "SELECT pg_logical_emit_message(false, 'pgsplit-cluster', 'replica sync')")
    [[ -n $target ]] || die "cannot read the primary's WAL position"
    # A test run that was interrupted may have left replay paused (pg_wal_replay_pause on a
    # test's own cluster); the replica would then never catch up.
    query_value "$REPLICA_PORT" postgres \
        "SELECT pg_wal_replay_resume() WHERE pg_is_in_recovery()
           AND pg_get_wal_replay_pause_state() <> 'not paused'" >/dev/null || true
    for ((i = 0; i < WAIT_SECONDS; i++)); do
        streaming=$(query_value "$PRIMARY_PORT" postgres \
            "SELECT count(*) FROM pg_stat_replication
             WHERE application_name = 'pgsplit_replica' AND state = 'streaming'")
        lag=$(query_value "$REPLICA_PORT" postgres \
            "SELECT pg_is_in_recovery() AND pg_last_wal_replay_lsn() >= '$target'::pg_lsn")
        if [[ $streaming == 1 && $lag == t ]]; then
            return 0
        fi
        sleep 1
    done
    log "replica did not catch up with the primary (LSN $target) in ${WAIT_SECONDS}s; last lines of $REPLICA_LOG:"
    tail -n 30 "$REPLICA_LOG" >&2 || true
    die "replica not streaming; 'scripts/cluster.sh stop' then remove $REPLICA_DIR to rebuild it"
}

# Prints one line per server; returns non-zero if either is not running and accepting connections.
status() {
    local rc=0 name dir port state recovery
    for name in primary replica; do
        if [[ $name == primary ]]; then dir=$PRIMARY_DIR port=$PRIMARY_PORT; else dir=$REPLICA_DIR port=$REPLICA_PORT; fi
        if [[ ! -d $dir ]]; then
            state="not created"
            rc=1
        elif ! is_running "$dir"; then
            state="stopped"
            rc=1
        elif ! is_ready "$port"; then
            state="running, not accepting connections"
            rc=1
        else
            recovery=$(query_value "$port" postgres "SELECT pg_is_in_recovery()")
            state="running, accepting connections, in_recovery=${recovery:-?}"
            if [[ $name == replica ]]; then
                state+=", $(query_value "$port" postgres \
                    "SELECT coalesce((SELECT status FROM pg_stat_wal_receiver), 'no wal receiver')")"
            fi
        fi
        printf '%-8s %s:%-5s  %s\n' "$name" "$HOST" "$port" "$state"
    done
    return "$rc"
}

start() {
    ensure_postgres
    [[ $PRIMARY_PORT != "$REPLICA_PORT" ]] || die "primary and replica ports must differ"
    if is_running "$PRIMARY_DIR" && is_running "$REPLICA_DIR" && [[ -f $BASE_DIR/$READY_MARK ]]; then
        wait_ready primary "$PRIMARY_PORT"
        wait_ready replica "$REPLICA_PORT"
        status
        return
    fi
    prepare_base_dir
    init_primary
    start_server primary "$PRIMARY_DIR" "$PRIMARY_LOG" "$PRIMARY_PORT"
    wait_ready primary "$PRIMARY_PORT"
    [[ -f $BASE_DIR/$READY_MARK ]] || provision_primary
    init_replica
    start_server replica "$REPLICA_DIR" "$REPLICA_LOG" "$REPLICA_PORT"
    wait_ready replica "$REPLICA_PORT"
    wait_replica_caught_up
    status
}

stop() {
    # Without server binaries nothing of ours can be running.
    find_postgres || return 0
    # Replica first, so it does not spin reconnecting to a stopped primary.
    stop_server replica "$REPLICA_DIR"
    stop_server primary "$PRIMARY_DIR"
}

print_env() {
    local bindir=/usr/lib/postgresql/$PG_MAJOR/bin
    local p="$HOST:$PRIMARY_PORT" r="$HOST:$REPLICA_PORT"
    local -a vars=(
        "PGSPLIT_CLUSTER_DIR=$BASE_DIR"
        "PGSPLIT_PRIMARY_PORT=$PRIMARY_PORT"
        "PGSPLIT_REPLICA_PORT=$REPLICA_PORT"
        "PGSPLIT_PRIMARY=$p"
        "PGSPLIT_REPLICAS=$r"
        "PGSPLIT_SOCKET_DIR=$BASE_DIR"
        "PGSPLIT_PG_BINDIR=$bindir"
        "PGSPLIT_TEST_SUPERUSER_URL=postgres://postgres:postgres@$p/app"
        "PGSPLIT_TEST_APP_URL=postgres://app:app@$p/app"
        "PGSPLIT_TEST_MD5_URL=postgres://app_md5:app_md5@$p/app"
        "PGSPLIT_TEST_TRUST_URL=postgres://app_trust@$p/app"
        "PGSPLIT_TEST_REPLICATION_URL=postgres://replicator:replicator@$p/app"
        "PGSPLIT_TEST_REPLICA_SUPERUSER_URL=postgres://postgres:postgres@$r/app"
        "PGSPLIT_TEST_REPLICA_APP_URL=postgres://app:app@$r/app"
    )
    local v
    for v in "${vars[@]}"; do
        printf 'export %s=%q\n' "${v%%=*}" "${v#*=}"
    done
}

usage() {
    echo "usage: $0 start|stop|status|restart|env" >&2
    exit 2
}

[[ $# -eq 1 ]] || usage
case $1 in
start) start ;;
stop) stop ;;
restart)
    stop
    start
    ;;
status)
    find_postgres || die "no PostgreSQL $PG_MAJOR server binaries"
    status
    ;;
env) print_env ;;
*) usage ;;
esac
