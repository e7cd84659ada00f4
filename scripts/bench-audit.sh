#!/usr/bin/env bash
# Audit log benchmark (BENCHMARKS.md, "Audit log"): seeds EVENTS events into a database of its own,
# then measures, against the release build of the service,
#   - the first page (50 events) of one customer's history and of a time range, and a few more
#     searches: EXPLAIN (ANALYZE, BUFFERS) of the exact statement, and the service's own latency
#     (its request log, in microseconds) over REQUESTS sequential requests each;
#   - exports of the newest EXPORT events as NDJSON and CSV: bytes received and the service's RSS
#     (VmRSS from /proc/PID/status), sampled every half second.
# Then it drops the database (KEEP=1 keeps it).
#
# Needs: PostgreSQL on 127.0.0.1:5432 (user postgres, trust), psql, curl, a Rust toolchain.
# Usage: scripts/bench-audit.sh            (EVENTS=10000000 EXPORT=1000000 REQUESTS=200)
set -euo pipefail
cd "$(dirname "$0")/.."

EVENTS=${EVENTS:-10000000}
EXPORT=${EXPORT:-1000000}
REQUESTS=${REQUESTS:-200}
DB=${BENCH_DB:-partner_catalog_bench}
PORT=${PORT:-18080}
OUT=${OUT:-target/bench-audit}
SERVER=postgres://postgres@127.0.0.1:5432
URL=$SERVER/$DB
BASE=http://127.0.0.1:$PORT
BIN=${CARGO_TARGET_DIR:-target}/release/partner-catalog

mkdir -p "$OUT"
psql() { command psql -X -q -v ON_ERROR_STOP=1 "$URL" "$@"; }
step() { printf '\n==> %s\n' "$*"; }

step "machine"
{
    echo "cpus: $(nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
    echo "memory: $(free -g | awk '/Mem:/ {print $2}') GiB"
    command psql -X -At "$SERVER/postgres" -c "select version()"
    command psql -X -At "$SERVER/postgres" -c "select 'shared_buffers=' || current_setting('shared_buffers')"
} | tee "$OUT/machine.txt"

step "build (release)"
cargo build --release --quiet

step "seed $EVENTS events into $DB"
command psql -X -q "$SERVER/postgres" -c "drop database if exists $DB with (force)"
"$BIN" --database-url "$URL" migrate >/dev/null
RUST_LOG=warn /usr/bin/time -f "seed wall %e s, max RSS %M KiB" \
    "$BIN" --database-url "$URL" dev seed --events "$EVENTS" 2>&1 | tee "$OUT/seed.txt"
psql -c "vacuum (analyze) events" -c "vacuum (analyze) event_chain_heads"
psql -At -c "select 'events: ' || count(*) from events" \
    -c "select 'table ' || pg_size_pretty(pg_relation_size('events')) || ', total with indexes ' || pg_size_pretty(pg_total_relation_size('events'))" \
    -c "select indexrelname || ' ' || pg_size_pretty(pg_relation_size(indexrelid)) from pg_stat_user_indexes where relname = 'events' order by 1" \
    | tee "$OUT/sizes.txt"

# What to search for: the busiest customer, a median one, a partner, and a one-hour window in the
# middle of the seeded year.
BUSY=$(psql -At -c "select chain_id from event_chain_heads order by seq desc limit 1")
MEDIAN=$(psql -At -c "select chain_id from event_chain_heads h where exists (select 1 from customers c where c.id = h.chain_id) order by seq offset (select count(*) / 2 from customers) limit 1")
PARTNER=$(psql -At -c "select id from partners order by id limit 1")
FROM=$(psql -At -c "select to_char(min(occurred_at) + interval '182 days', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') from events")
TO=$(psql -At -c "select to_char(timestamptz '$FROM' + interval '1 hour', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')")
EXPORT_FROM=$(psql -At -c "select to_char(occurred_at at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') from events order by id desc offset $((EXPORT - 1)) limit 1")
{
    echo "busiest customer $BUSY: $(psql -At -c "select seq from event_chain_heads where chain_id = '$BUSY'") events"
    echo "median customer $MEDIAN: $(psql -At -c "select seq from event_chain_heads where chain_id = '$MEDIAN'") events"
    echo "partner $PARTNER: $(psql -At -c "select count(*) from events where partner_id = '$PARTNER'") events naming it"
    echo "time range [$FROM, $TO): $(psql -At -c "select count(*) from events where occurred_at >= '$FROM' and occurred_at < '$TO'") events"
    echo "export from $EXPORT_FROM: $(psql -At -c "select count(*) from events where occurred_at >= '$EXPORT_FROM'") events"
} | tee "$OUT/subjects.txt"

step "EXPLAIN (ANALYZE, BUFFERS) of the service's statement (src/db/audit.rs), as it runs it"
# The statement text is the one in db::audit::events; the service runs it with
# plan_cache_mode = force_custom_plan (db::audit::begin_search), as here.
SEARCH="select id, occurred_at, actor, request_id, customer_id, partner_id, event_type,
                  payload::text, chain_id, chain_seq, prev_hash, hash
           from events
           where id >= \$1 and id < \$2
             and (\$3::uuid is null or (chain_id = \$3 and customer_id = \$3))
             and (\$4::uuid is null or partner_id = \$4)
             and (\$5::text is null or actor = \$5)
             and (\$6::text is null or event_type = \$6)
           order by id desc
           limit \$7"
LOW=00000000-0000-0000-0000-000000000000
HIGH=ffffffff-ffff-ffff-ffff-ffffffffffff
# The id bounds of the time range, as domain::audit::event_id_floor computes them.
ID_FROM=$(psql -At -c "select encode(event_id_prefix('$FROM') || '\x0000000000000000'::bytea, 'hex')::uuid")
ID_TO=$(psql -At -c "select encode(event_id_prefix('$TO') || '\x0000000000000000'::bytea, 'hex')::uuid")
explain() { # name, parameters
    psql -c "set plan_cache_mode = force_custom_plan" \
        -c "prepare search(uuid, uuid, uuid, uuid, text, text, int8) as $SEARCH" \
        -c '\o /dev/null' -c "execute search($2)" -c '\o' \
        -c "explain (analyze, buffers) execute search($2)" | tee "$OUT/explain-$1.txt"
}
explain customer "'$LOW', '$HIGH', '$BUSY', null, null, null, 51"
explain median-customer "'$LOW', '$HIGH', '$MEDIAN', null, null, null, 51"
explain time-range "'$ID_FROM', '$ID_TO', null, null, null, null, 51"
explain partner "'$LOW', '$HIGH', null, '$PARTNER', null, null, 51"
explain type "'$LOW', '$HIGH', null, null, null, 'customer_qualifications_set', 51"

step "an auditor token"
TOKEN=$("$BIN" --database-url "$URL" token create --role auditor --label "audit benchmark" --expires 1d \
    | awk '/^secret:/ {print $2}')
# Every API call below carries it (health checks need none, and ignore it).
curl() { command curl -H "authorization: Bearer $TOKEN" "$@"; }

step "start the service"
LOG_FORMAT=json RUST_LOG=info,sqlx=warn METRICS_BIND=off "$BIN" --database-url "$URL" --bind "127.0.0.1:$PORT" serve \
    >"$OUT/service.log" 2>&1 &
SERVICE=$!
trap 'kill $SERVICE 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do curl -sf "$BASE/readyz" >/dev/null && break; sleep 0.2; done
echo "service pid $SERVICE"

# Sequential requests to one URL; the service's logged latency (median, p95, max) and curl's.
measure() { # name, query string
    local url="$BASE/v1/audit/events?$2" first
    for _ in $(seq 1 5); do curl -sf -o /dev/null "$url"; done
    first=$(($(wc -l <"$OUT/service.log") + 1))
    for _ in $(seq 1 "$REQUESTS"); do curl -sf -o /dev/null -w '%{time_total}\n' "$url"; done >"$OUT/client-$1.txt"
    sleep 0.2
    tail -n +"$first" "$OUT/service.log" | grep -o '"latency":"[0-9]* μs"' | grep -o '[0-9]*' | sort -n >"$OUT/server-$1.txt"
    awk -v name="$1" '{ v[NR] = $1 } END {
        printf "%-22s n=%d  server latency: median %d µs, p95 %d µs, max %d µs", name, NR, v[int(NR/2)+1], v[int(NR*0.95)], v[NR] }' \
        "$OUT/server-$1.txt"
    sort -n "$OUT/client-$1.txt" | awk '{ v[NR] = $1 } END { printf "; client median %.0f µs\n", v[int(NR/2)+1] * 1e6 }'
}

step "first pages, $REQUESTS requests each"
CURSOR=$(curl -sf "$BASE/v1/audit/events?customer_id=$BUSY&limit=50" | grep -o '"next_cursor":"[^"]*"' | cut -d'"' -f4)
{
    measure customer "customer_id=$BUSY"
    measure customer-page-2 "customer_id=$BUSY&after=$CURSOR"
    measure median-customer "customer_id=$MEDIAN"
    measure time-range "from=$FROM&to=$TO"
    measure partner "partner_id=$PARTNER"
    measure type "type=customer_qualifications_set"
    measure all "limit=50"
} | tee "$OUT/pages.txt"

# Streams the export to a file while sampling its size and the service's RSS every 0.5 s.
export_run() { # name, accept, curl options
    local file="$OUT/export-$1.out" samples="$OUT/export-$1-samples.csv" start
    rm -f "$file"
    start=$(date +%s.%N)
    # shellcheck disable=SC2086 # $3: extra curl options, word-split on purpose
    curl -sf ${3:-} -H "accept: $2" "$BASE/v1/audit/events?from=$EXPORT_FROM" -o "$file" &
    local curl_pid=$!
    echo "seconds,bytes,rss_kib" >"$samples"
    while kill -0 "$curl_pid" 2>/dev/null; do
        printf '%.1f,%s,%s\n' "$(echo "$(date +%s.%N) - $start" | bc)" "$(stat -c %s "$file" 2>/dev/null || echo 0)" \
            "$(awk '/VmRSS/ {print $2}' "/proc/$SERVICE/status")" >>"$samples"
        sleep 0.5
    done
    wait "$curl_pid"
    local seconds lines bytes
    seconds=$(echo "$(date +%s.%N) - $start" | bc)
    lines=$(wc -l <"$file")
    bytes=$(stat -c %s "$file")
    awk -F, -v name="$1" -v s="$seconds" -v l="$lines" -v b="$bytes" 'NR > 1 { if (min == "" || $3 < min) min = $3; if ($3 > max) max = $3 }
        END { printf "%-18s %d lines, %.0f MB in %.1f s: %.0f lines/s, %.1f MB/s; service RSS %d..%d MiB\n",
              name, l, b / 1e6, s, l / s, b / 1e6 / s, min / 1024, max / 1024 }' "$samples"
    rm -f "$file"
}

step "exports of the newest $EXPORT events"
echo "service RSS before: $(awk '/VmRSS/ {print $2}' "/proc/$SERVICE/status") KiB" | tee "$OUT/exports.txt"
{
    export_run ndjson application/x-ndjson
    export_run csv text/csv
    # A client slower than the database: back-pressure must hold the rows in PostgreSQL, not here.
    export_run ndjson-slow-client application/x-ndjson "--limit-rate 50M"
} | tee -a "$OUT/exports.txt"
echo "service RSS after: $(awk '/VmRSS/ {print $2}' "/proc/$SERVICE/status") KiB" | tee -a "$OUT/exports.txt"

step "verify every chain"
RUST_LOG=error /usr/bin/time -f "audit verify wall %e s, max RSS %M KiB" \
    "$BIN" --database-url "$URL" audit verify 2>&1 | tee "$OUT/verify.txt"

kill "$SERVICE"
wait "$SERVICE" 2>/dev/null || true
trap - EXIT
if [ "${KEEP:-0}" != 1 ]; then
    step "drop $DB"
    command psql -X -q "$SERVER/postgres" -c "drop database $DB with (force)"
fi
echo "results in $OUT"
