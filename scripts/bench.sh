#!/usr/bin/env bash
# Purchases per second, service against the database's own limit (issues 6 and 15, BENCHMARKS.md).
#
# Seeds one dataset (loadgen seed) into a template database, then for each client count and
# scenario (spread and hot: purchases; decide: dry-run decisions; eligible: eligible-offer listings;
# mixed: all of them and qualification changes, weighted as the load generator sends them) runs on
# fresh copies of it, one after the other:
#   - pgbench with the service's transactions as raw SQL, statement for statement as the service
#     sent them before issue 15 (scripts/bench/{purchase,decide,eligible,qualification}.sql: one
#     round trip per statement);
#   - pgbench with the same durable work in ONE round trip per transaction, a function call
#     (scripts/bench/one_trip.sql, *_1rt.sql): the database's limit;
#   - the release service driven by the load generator over HTTP.
# Prints one table with service/statements and service/one-trip per scenario and client count.
#
# Usage: scripts/bench.sh   CLIENTS="8 32" SECONDS_PER_RUN=20 SCENARIOS="spread hot decide eligible mixed"
#        (PROFILE=debug builds without optimizations: CI's smoke run, not a measurement)
set -euo pipefail
cd "$(dirname "$0")/.."

client_counts=${CLIENTS:-8 32}
seconds=${SECONDS_PER_RUN:-20}
scenarios=${SCENARIOS:-spread hot decide eligible mixed}
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
psql -q -v ON_ERROR_STOP=1 -f scripts/bench/one_trip.sql "$template"

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
# Runs pgbench on a fresh copy: `pgbench_run LABEL SCRIPT…`; sets tps, failed and p50 p95 p99 max.
pgbench_run() {
    local label=$1; shift
    fresh_copy
    echo "== $scenario, $label: pgbench ($clients clients, ${seconds} s), load $(cut -d' ' -f1-3 /proc/loadavg)"
    rm -f "$out"/pgbench_log.*
    pgbench -n -M prepared -c "$clients" -j 2 -T "$seconds" -D customers=$customers -D partners=10 \
        "$@" -l --log-prefix="$out/pgbench_log" "$db" > "$out/pgbench-$scenario-$label.txt" 2>&1 \
        || { cat "$out/pgbench-$scenario-$label.txt"; exit 1; }
    tps=$(awk '/^tps = / {print $3}' "$out/pgbench-$scenario-$label.txt" | tail -1)
    failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$out/pgbench-$scenario-$label.txt")
    read -r p50 p95 p99 pmax <<< "$(pgbench_percentiles)"
    echo "pgbench ($label): $tps tps, p50 $p50 p95 $p95 p99 $p99 max $pmax ms, failed ${failed:-0}"
}

rows=()
for clients in $client_counts; do
for scenario in $scenarios; do
    case $scenario in
        spread) statements=(-f scripts/bench/purchase.sql); one_trip=(-f scripts/bench/purchase_1rt.sql)
                customers=10000 ;;
        hot) statements=(-f scripts/bench/purchase.sql); one_trip=(-f scripts/bench/purchase_1rt.sql)
             customers=5 ;;
        decide) statements=(-f scripts/bench/decide.sql); one_trip=(-f scripts/bench/decide_1rt.sql)
                customers=10000 ;;
        eligible) statements=(-f scripts/bench/eligible.sql); one_trip=(-f scripts/bench/eligible_1rt.sql)
                  customers=10000 ;;
        # As loadgen's mix: 50 % purchases, 25 % decisions, 24 % listings, 1 % qualification changes.
        mixed) statements=(-f scripts/bench/purchase.sql@50 -f scripts/bench/decide.sql@25
                           -f scripts/bench/eligible.sql@24 -f scripts/bench/qualification.sql@1)
               one_trip=(-f scripts/bench/purchase_1rt.sql@50 -f scripts/bench/decide_1rt.sql@25
                         -f scripts/bench/eligible_1rt.sql@24 -f scripts/bench/qualification_1rt.sql@1)
               customers=10000 ;;
        *) echo "unknown scenario $scenario" >&2; exit 2 ;;
    esac

    pgbench_run statements "${statements[@]}"
    pg_tps=$tps pg50=$p50 pg95=$p95 pg99=$p99 pgmax=$pmax
    pgbench_run one-trip "${one_trip[@]}"
    rt_tps=$tps rt99=$p99

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
    limit=$(awk -v a="$(get rps)" -v b="$rt_tps" 'BEGIN { printf "%.2f", a / b }')
    p99_ratio=$(awk -v a="$(get p99)" -v b="$rt99" 'BEGIN { printf "%.2f", a / b }')
    rows+=("| $scenario | $clients | $(get rps) | $(get p50) / $(get p95) / $(get p99) / $(get max) | $(get statuses) | $(get 5xx) | $(get deadlocks) | $(get gcc_violations) | $rss | ${pg_tps%.*} | $pg50 / $pg95 / $pg99 / $pgmax | ${rt_tps%.*} | $rt99 | **$ratio** | **$limit** | $p99_ratio |")
done
done

echo
echo "| scenario | clients | service req/s | service ms p50 / p95 / p99 / max | statuses | 5xx | deadlocks | GCC violations | service peak RSS MiB | statements tx/s | statements ms p50 / p95 / p99 / max | one-trip tx/s | one-trip ms p99 | service / statements | service / one-trip | p99 service / one-trip |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
