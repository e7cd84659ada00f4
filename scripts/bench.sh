#!/usr/bin/env bash
# Purchases per second, service against the database's own limit (issue 6, BENCHMARKS.md).
#
# Seeds one dataset (loadgen seed) into a template database, then for each scenario (spread, hot,
# mixed) runs on a fresh copy of it: pgbench with the same transactions as raw SQL
# (scripts/bench/*.sql), then the release service driven by the load generator over HTTP. Prints
# one table with the ratio service/pgbench per scenario.
#
# Usage: scripts/bench.sh            CLIENTS=32 SECONDS_PER_RUN=20 SCENARIOS="spread hot mixed"
#        (PROFILE=debug builds without optimizations: CI's smoke run, not a measurement)
set -euo pipefail
cd "$(dirname "$0")/.."

clients=${CLIENTS:-32}
seconds=${SECONDS_PER_RUN:-20}
scenarios=${SCENARIOS:-spread hot mixed}
pool=${DATABASE_MAX_CONNECTIONS:-16}
server=postgres://postgres@127.0.0.1:5432
# This run's own databases and port, so it can run beside anything else (dropped at exit).
run=$$_$(date +%s)
template=partner_catalog_loadgen_template_$run
db=partner_catalog_loadgen_$run
bind=127.0.0.1:$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
target=${CARGO_TARGET_DIR:-target}
out=$target/bench
mkdir -p "$out"
export PGHOST=127.0.0.1 PGUSER=postgres

cleanup() {
    [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    dropdb --if-exists --force "$db" >/dev/null 2>&1 || true
    dropdb --if-exists --force "$template" >/dev/null 2>&1 || true
}
trap cleanup EXIT

profile=${PROFILE:-release}
if [ "$profile" = release ]; then
    cargo build --release --quiet --bin partner-catalog --example loadgen
else
    cargo build --quiet --bin partner-catalog --example loadgen
fi
bin=$target/$profile/partner-catalog
loadgen=$target/$profile/examples/loadgen

dropdb --if-exists "$db" >/dev/null
dropdb --if-exists "$template" >/dev/null
DATABASE_URL="$server/$template" "$bin" migrate >/dev/null
"$loadgen" --database-url "$server/$template" seed

fresh_copy() {
    dropdb --if-exists "$db" >/dev/null
    createdb -T "$template" "$db"
}

# p50/p95/p99/max in ms from pgbench's per-transaction logs (column 3 is the latency in µs).
pgbench_percentiles() {
    cat "$out"/pgbench_log.* | awk '{print $3}' | sort -n | awk '
        { a[NR] = $1 }
        END { split("0.50 0.95 0.99 1.0", p, " ");
              for (i = 1; i <= 4; i++) { k = int(NR * p[i] + 0.999999); if (k < 1) k = 1; printf "%.2f ", a[k] / 1000 } }'
}

printf '%s\n' "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; $(psql -Atc 'select version()' | cut -d, -f1)"
rows=()
for scenario in $scenarios; do
    case $scenario in
        spread) scripts=(-f scripts/bench/purchase.sql); customers=10000 ;;
        hot) scripts=(-f scripts/bench/purchase.sql); customers=5 ;;
        mixed) scripts=(-f scripts/bench/purchase.sql@50 -f scripts/bench/decide.sql@49
                        -f scripts/bench/qualification.sql@1); customers=10000 ;;
        *) echo "unknown scenario $scenario" >&2; exit 2 ;;
    esac

    fresh_copy
    echo "== $scenario: pgbench ($clients clients, ${seconds} s), load $(cut -d' ' -f1-3 /proc/loadavg)"
    rm -f "$out"/pgbench_log.*
    pgbench -n -M prepared -c "$clients" -j 2 -T "$seconds" -D customers=$customers -D partners=10 \
        "${scripts[@]}" -l --log-prefix="$out/pgbench_log" "$db" > "$out/pgbench-$scenario.txt" 2>&1 \
        || { cat "$out/pgbench-$scenario.txt"; exit 1; }
    pg_tps=$(awk '/^tps = / {print $3}' "$out/pgbench-$scenario.txt" | tail -1)
    pg_failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$out/pgbench-$scenario.txt")
    read -r pg50 pg95 pg99 pgmax <<< "$(pgbench_percentiles)"
    echo "pgbench: $pg_tps tps, p50 $pg50 p95 $pg95 p99 $pg99 max $pgmax ms, failed ${pg_failed:-0}"

    fresh_copy
    echo "== $scenario: service ($clients clients, pool $pool, ${seconds} s), load $(cut -d' ' -f1-3 /proc/loadavg)"
    DATABASE_URL="$server/$db" BIND=$bind METRICS_BIND=off DATABASE_MAX_CONNECTIONS=$pool "$bin" serve > "$out/service-$scenario.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 50); do curl -fsS "http://$bind/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
    "$loadgen" --database-url "$server/$db" run --url "http://$bind" --scenario "$scenario" \
        --clients "$clients" --seconds "$seconds" | tee "$out/loadgen-$scenario.txt"
    rss=$(awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$pid/status")
    kill "$pid"; wait "$pid" || true; pid=
    result=$(grep '^RESULT' "$out/loadgen-$scenario.txt")
    get() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<< "$result"; }
    ratio=$(awk -v a="$(get rps)" -v b="$pg_tps" 'BEGIN { printf "%.2f", a / b }')
    rows+=("| $scenario | $clients | $(get rps) | $(get p50) / $(get p95) / $(get p99) / $(get max) | $(get statuses) | $(get 5xx) | $(get deadlocks) | $(get gcc_violations) | $rss | ${pg_tps%.*} | $pg50 / $pg95 / $pg99 / $pgmax | **$ratio** |")
done

echo
echo "| scenario | clients | service req/s | service ms p50 / p95 / p99 / max | statuses | 5xx | deadlocks | GCC violations | service peak RSS MiB | pgbench tx/s | pgbench ms p50 / p95 / p99 / max | service / pgbench |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
