#!/usr/bin/env bash
# The service's purchases per second before and after a change, in one run (e.g. issue 14's
# "versioned policy costs no more than 5 %", BENCHMARKS.md "Policy versions").
#
# Builds this checkout and BASE_REV (a git revision, built in a worktree under the target
# directory, sharing its dependencies) in release mode. Each side migrates and seeds its own
# template database with its own binaries (loadgen seed: the same dataset), so each runs on the
# schema it shipped with. Then alternates runs (RUNS="base new base new new base"), each on a fresh
# copy of its side's template, so the machine's noise hits both: the release service driven by the
# load generator. Prints one row per run and the ratio of the means, new / base, with the CPU time
# each purchase cost the service and PostgreSQL (their processes' user + system time over the run,
# the load generator's warm-up second included, divided by the purchases of the measured seconds:
# compare sides at one run length). When the machine is saturated it mostly mirrors throughput;
# its split between service and PostgreSQL, and runs below saturation, say more.
#
# Usage: BASE_REV=main scripts/bench-before-after.sh   CLIENTS=32 SECONDS_PER_RUN=20 SCENARIO=spread
#        RUNS="base new base new new base"
set -euo pipefail
cd "$(dirname "$0")/.."

base_rev=${BASE_REV:?name the revision to compare with, e.g. BASE_REV=main}
clients=${CLIENTS:-32}
seconds=${SECONDS_PER_RUN:-20}
scenario=${SCENARIO:-spread}
runs=${RUNS:-base new base new new base}
pool=${DATABASE_MAX_CONNECTIONS:-16}
server=postgres://postgres@127.0.0.1:5432
run=$$_$(date +%s)
db=partner_catalog_before_after_$run
bind=127.0.0.1:$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
target=$(realpath "${CARGO_TARGET_DIR:-target}")
out=$target/bench-before-after
base_src=$out/base-src
mkdir -p "$out"
export PGHOST=127.0.0.1 PGUSER=postgres
. scripts/bench/cpu.sh

cleanup() {
    [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    for side in base new; do dropdb --if-exists --force "${db}_$side" >/dev/null 2>&1 || true; done
    dropdb --if-exists --force "$db" >/dev/null 2>&1 || true
    git worktree remove --force "$base_src" >/dev/null 2>&1 || true
}
trap cleanup EXIT

cargo build --release --quiet --bin partner-catalog --example loadgen
git worktree remove --force "$base_src" >/dev/null 2>&1 || true
git worktree add --quiet --detach "$base_src" "$base_rev"
(cd "$base_src" && CARGO_TARGET_DIR=$target/bench-base cargo build --release --quiet --bin partner-catalog --example loadgen)
declare -A bin loadgen
bin[new]=$target/release/partner-catalog loadgen[new]=$target/release/examples/loadgen
bin[base]=$target/bench-base/release/partner-catalog loadgen[base]=$target/bench-base/release/examples/loadgen

for side in base new; do
    dropdb --if-exists "${db}_$side" >/dev/null
    DATABASE_URL="$server/${db}_$side" "${bin[$side]}" migrate >/dev/null
    "${loadgen[$side]}" --database-url "$server/${db}_$side" seed >/dev/null
done

printf '%s\n' "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; $(psql -Atc 'select version()' | cut -d, -f1); base $(git rev-parse --short "$base_rev"), new $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo '+changes'); $scenario, $clients clients, ${seconds} s per run, pool $pool"
echo "| run | side | load (1 min) | req/s | ms p50 / p95 / p99 / max | 5xx | deadlocks | GCC violations | CPU µs per purchase: service / PostgreSQL |"
echo "|---|---|---|---|---|---|---|---|---|"
declare -A sum count cpu_service cpu_postgres
i=0
for side in $runs; do
    i=$((i + 1))
    [ -n "${bin[$side]:-}" ] || { echo "unknown run $side (base or new)" >&2; exit 2; }
    dropdb --if-exists "$db" >/dev/null
    createdb -T "${db}_$side" "$db"
    load=$(cut -d' ' -f1 /proc/loadavg)
    DATABASE_URL="$server/$db" BIND=$bind METRICS_BIND=off DATABASE_MAX_CONNECTIONS=$pool \
        "${bin[$side]}" serve > "$out/service-$i-$side.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 50); do curl -fsS "http://$bind/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
    service0=$(cpu_ms "$pid") postgres0=$(cpu_ms $(pgrep -u postgres))
    "${loadgen[$side]}" --database-url "$server/$db" run --url "http://$bind" --scenario "$scenario" \
        --clients "$clients" --seconds "$seconds" > "$out/loadgen-$i-$side.txt"
    # Before the service stops, while its connections' backends are alive (a backend that started
    # during the run counts from zero, one that ended during it is missed: a few autovacuum workers).
    service_ms=$(( $(cpu_ms "$pid") - service0 )) postgres_ms=$(( $(cpu_ms $(pgrep -u postgres)) - postgres0 ))
    kill "$pid"; wait "$pid" || true; pid=
    result=$(grep '^RESULT' "$out/loadgen-$i-$side.txt")
    get() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<< "$result"; }
    rps=$(get rps)
    sum[$side]=$(awk -v a="${sum[$side]:-0}" -v b="$rps" 'BEGIN { print a + b }')
    count[$side]=$(( ${count[$side]:-0} + 1 ))
    purchases=$(awk -v r="$rps" -v s="$seconds" 'BEGIN { print r * s }')
    per_purchase() { awk -v ms="$1" -v n="$purchases" 'BEGIN { printf "%.0f", ms * 1000 / n }'; }
    cpu_service[$side]=$(awk -v a="${cpu_service[$side]:-0}" -v b="$(per_purchase "$service_ms")" 'BEGIN { print a + b }')
    cpu_postgres[$side]=$(awk -v a="${cpu_postgres[$side]:-0}" -v b="$(per_purchase "$postgres_ms")" 'BEGIN { print a + b }')
    echo "| $i | $side | $load | $rps | $(get p50) / $(get p95) / $(get p99) / $(get max) | $(get 5xx) | $(get deadlocks) | $(get gcc_violations) | $(per_purchase "$service_ms") / $(per_purchase "$postgres_ms") |"
done
echo
awk -v sb="${sum[base]:-0}" -v nb="${count[base]:-0}" -v sn="${sum[new]:-0}" -v nn="${count[new]:-0}" 'BEGIN {
    if (nb == 0 || nn == 0) exit;
    printf "mean req/s: base %.0f, new %.0f; new / base = **%.3f**\n", sb / nb, sn / nn, (sn / nn) / (sb / nb) }'
awk -v sb="${cpu_service[base]:-0}" -v pb="${cpu_postgres[base]:-0}" -v nb="${count[base]:-0}" \
    -v sn="${cpu_service[new]:-0}" -v pn="${cpu_postgres[new]:-0}" -v nn="${count[new]:-0}" 'BEGIN {
    if (nb == 0 || nn == 0) exit;
    printf "mean CPU µs per purchase, service / PostgreSQL: base %.0f / %.0f, new %.0f / %.0f\n",
        sb / nb, pb / nb, sn / nn, pn / nn }'
