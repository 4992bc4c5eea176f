#!/usr/bin/env bash
# Start a local "cluster" on localhost: PostgreSQL and Redis (when installed),
# a Dask scheduler and two Dask workers (1 thread each: casatools is not
# thread-safe). Everything lives in $CLUSTER_DIR (pids, logs, data) and is
# stopped by scripts/cluster_stop.sh. Prints the settings to export (also in
# $CLUSTER_DIR/cluster.env).
#
#   scripts/cluster_start.sh            # start
#   source .cluster/cluster.env         # point the pipeline at it
#   scripts/cluster_stop.sh             # stop everything
#
# Settings (environment): CLUSTER_DIR (./.cluster), PYTHON (.venv/bin/python,
# else python3), DASK_PORT (18786), N_WORKERS (2), WORKER_MEMORY (4GB),
# WORKER_RESOURCES ("CASA=1,IMAGER_SLOTS=1,MEMORY_GB=4"), WORKER_LIFETIME
# (12h: workers are restarted by their nanny after it, staggered by 30 min),
# REDIS_PORT (16379), PG_PORT (15432), PG_DIR ($CLUSTER_DIR/pg; run as root,
# PostgreSQL runs as the postgres user, which must reach it), NO_DB=1 to skip
# Redis and PostgreSQL.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CLUSTER_DIR="${CLUSTER_DIR:-$REPO/.cluster}"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$REPO/.venv/bin/python" ]]; then PYTHON="$REPO/.venv/bin/python"; else PYTHON=python3; fi
fi
DASK_PORT="${DASK_PORT:-18786}"
N_WORKERS="${N_WORKERS:-2}"
WORKER_MEMORY="${WORKER_MEMORY:-4GB}"
WORKER_RESOURCES="${WORKER_RESOURCES:-CASA=1,IMAGER_SLOTS=1,MEMORY_GB=4}"
WORKER_LIFETIME="${WORKER_LIFETIME:-12h}"
REDIS_PORT="${REDIS_PORT:-16379}"
PG_PORT="${PG_PORT:-15432}"
PG_DIR="${PG_DIR:-$CLUSTER_DIR/pg}"

mkdir -p "$CLUSTER_DIR"
if compgen -G "$CLUSTER_DIR/*.pid" > /dev/null; then
    echo "cluster_start: $CLUSTER_DIR has pid files: already running? run scripts/cluster_stop.sh first" >&2
    exit 1
fi

# The pipeline's worker environment: this checkout's sources, glibc returning
# freed memory early, one BLAS thread, a dead worker's task rerun elsewhere.
export PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}"
export MALLOC_TRIM_THRESHOLD_=65536 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=3
export DASK_DISTRIBUTED__SCHEDULER__WORK_STEALING=True

start() {  # start NAME CMD...: own session (stop kills its process group), pid file
    local name="$1"; shift
    setsid "$@" >> "$CLUSTER_DIR/$name.log" 2>&1 < /dev/null &
    echo $! > "$CLUSTER_DIR/$name.pid"
}

ENV_FILE="$CLUSTER_DIR/cluster.env"
: > "$ENV_FILE"

# -- PostgreSQL -------------------------------------------------------------------
PG_BIN=""
for candidate in "$(command -v pg_ctl 2>/dev/null || true)" /usr/lib/postgresql/*/bin/pg_ctl; do
    if [[ -n "$candidate" && -x "$candidate" ]]; then PG_BIN="$(dirname "$candidate")"; break; fi
done
start_postgres() {
    local as_pg=()
    mkdir -p "$PG_DIR"
    if [[ $EUID -eq 0 ]]; then  # PostgreSQL refuses to run as root
        as_pg=(runuser -u postgres --)
        chown postgres "$PG_DIR"
    fi
    if [[ ! -f "$PG_DIR/data/PG_VERSION" ]]; then
        "${as_pg[@]}" "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres --auth=trust > "$CLUSTER_DIR/postgres-init.log" 2>&1 || return 1
    fi
    "${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" -w \
        -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -k $PG_DIR" start > /dev/null || return 1
    head -1 "$PG_DIR/data/postmaster.pid" > "$CLUSTER_DIR/postgres.pid"
    echo "$PG_DIR" > "$CLUSTER_DIR/postgres.dir"
    "${as_pg[@]}" "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres dsa110 2> /dev/null || true
}
if [[ -z "${NO_DB:-}" && -n "$PG_BIN" ]]; then
    if start_postgres; then
        echo "export DSA110__DATABASE__URL=postgresql://postgres@127.0.0.1:$PG_PORT/dsa110" >> "$ENV_FILE"
        echo "PostgreSQL on 127.0.0.1:$PG_PORT (database dsa110, data in $PG_DIR)"
    else
        echo "PostgreSQL: did not start (the postgres user needs access to $PG_DIR; see $CLUSTER_DIR/postgres-init.log): skipped" >&2
    fi
else
    echo "PostgreSQL: not installed (or NO_DB set): skipped"
fi

# -- Redis --------------------------------------------------------------------------
if [[ -z "${NO_DB:-}" ]] && command -v redis-server > /dev/null; then
    mkdir -p "$CLUSTER_DIR/redis"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$CLUSTER_DIR/redis" \
        --appendonly yes --save "" --daemonize yes \
        --pidfile "$CLUSTER_DIR/redis.pid" --logfile "$CLUSTER_DIR/redis.log"
    {
        echo "export DSA110__QUEUE__BACKEND=redis"
        echo "export DSA110__QUEUE__REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0"
    } >> "$ENV_FILE"
    echo "Redis on 127.0.0.1:$REDIS_PORT"
else
    echo "Redis: not installed (or NO_DB set): skipped"
fi

# -- Dask ---------------------------------------------------------------------------
ADDRESS="tcp://127.0.0.1:$DASK_PORT"
start scheduler "$PYTHON" -m distributed.cli.dask_scheduler --host 127.0.0.1 \
    --port "$DASK_PORT" --dashboard-address 127.0.0.1:0 --no-show
for ((i = 0; i < N_WORKERS; i++)); do
    start "worker$i" "$PYTHON" -m distributed.cli.dask_worker "$ADDRESS" \
        --name "w$i" --nthreads 1 --nworkers 1 --host 127.0.0.1 --no-dashboard \
        --resources "$WORKER_RESOURCES" --memory-limit "$WORKER_MEMORY" \
        --lifetime "$WORKER_LIFETIME" --lifetime-stagger 30m --lifetime-restart \
        --local-directory "$CLUSTER_DIR/worker$i"
done
"$PYTHON" - "$ADDRESS" "$N_WORKERS" <<'PY'
import sys
from distributed import Client
with Client(sys.argv[1], timeout=60) as client:
    client.wait_for_workers(int(sys.argv[2]), timeout=60)
PY
{
    echo "export DSA110__EXECUTION__BACKEND=dask"
    echo "export DSA110__EXECUTION__SCHEDULER_ADDRESS=$ADDRESS"
} >> "$ENV_FILE"
echo "Dask scheduler $ADDRESS with $N_WORKERS workers ($WORKER_RESOURCES, $WORKER_MEMORY)"
echo "settings: source $ENV_FILE"
cat "$ENV_FILE"
