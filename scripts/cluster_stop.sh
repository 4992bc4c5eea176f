#!/usr/bin/env bash
# Stop the local cluster that scripts/cluster_start.sh started: the Dask
# workers and scheduler (their whole process groups, WSClean included), Redis
# and PostgreSQL. Data stay in $CLUSTER_DIR (./.cluster); pass --purge to
# delete it too.
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CLUSTER_DIR="${CLUSTER_DIR:-$REPO/.cluster}"

stop_group() {  # stop_group PIDFILE: TERM its process group, KILL after 10 s
    local file="$1" pid
    pid="$(cat "$file")"
    if kill -0 "$pid" 2> /dev/null; then
        kill -TERM -- "-$pid" 2> /dev/null || kill -TERM "$pid" 2> /dev/null
        for _ in $(seq 100); do kill -0 "$pid" 2> /dev/null || break; sleep 0.1; done
        kill -KILL -- "-$pid" 2> /dev/null || kill -KILL "$pid" 2> /dev/null || true
    fi
    rm -f "$file"
}

shopt -s nullglob
for file in "$CLUSTER_DIR"/worker*.pid; do stop_group "$file"; done
[[ -f "$CLUSTER_DIR/scheduler.pid" ]] && stop_group "$CLUSTER_DIR/scheduler.pid"
if [[ -f "$CLUSTER_DIR/redis.pid" ]]; then
    pid="$(cat "$CLUSTER_DIR/redis.pid")"
    kill -TERM "$pid" 2> /dev/null
    for _ in $(seq 100); do kill -0 "$pid" 2> /dev/null || break; sleep 0.1; done
    rm -f "$CLUSTER_DIR/redis.pid"
fi
if [[ -f "$CLUSTER_DIR/postgres.pid" ]]; then
    PG_CTL="$(command -v pg_ctl 2> /dev/null || ls /usr/lib/postgresql/*/bin/pg_ctl 2> /dev/null | head -1)"
    as_pg=()
    [[ $EUID -eq 0 ]] && as_pg=(runuser -u postgres --)
    PG_DIR="$(cat "$CLUSTER_DIR/postgres.dir" 2> /dev/null || echo "$CLUSTER_DIR/pg")"
    "${as_pg[@]}" "$PG_CTL" -D "$PG_DIR/data" -m fast -w stop > /dev/null 2>&1 \
        || kill -TERM "$(cat "$CLUSTER_DIR/postgres.pid")" 2> /dev/null
    rm -f "$CLUSTER_DIR/postgres.pid" "$CLUSTER_DIR/postgres.dir"
    [[ "${1:-}" == "--purge" ]] && rm -rf "$PG_DIR"
fi
rm -f "$CLUSTER_DIR/cluster.env"
if [[ "${1:-}" == "--purge" ]]; then rm -rf "$CLUSTER_DIR"; fi
echo "cluster in $CLUSTER_DIR stopped"
