#!/usr/bin/env bash
# Webhook delivery under the purchase load (issue 13, BENCHMARKS.md "Webhook delivery").
#
# Seeds the purchase benchmark's dataset (loadgen seed) into a template database and marks every
# chain dispatched (history is not news, as the webhooks migration does). Then alternates runs with
# delivery off and on (RUNS="off on off on"), each on a fresh copy, so the machine's noise hits
# both: the release service (WEBHOOK_DELIVERY=false or true) driven by the load generator's spread
# scenario. In an "on" run a receiver (examples/webhook_sink.rs) listens on 127.0.0.1 and every
# partner of the dataset, and the platform, have an endpoint there (all event types), registered
# through the API. After the load the script waits for every delivery to settle, then reports
# purchases/s, the lag from each event's commit to its arrival, the drain (last arrival after the
# load stopped), and whether every purchase's notices arrived. And the CPU time per purchase of
# the service, PostgreSQL and the receiver, over the load and the drain together: on these two
# cores the receiver's work is taken from the purchases too, and in production it runs elsewhere,
# so "service + PostgreSQL, on / off" is delivery's own cost to the purchase path. CPU time moves
# with whatever else the shared machine runs; the database's work per purchase does not: the WAL
# records and bytes it wrote (the whole server's, so it must be otherwise idle) and the buffers its
# statements touched (with the script's own few checks), read a second after the service stopped,
# when its backends have exited and reported them.
#
# Usage: scripts/bench-webhooks.sh   CLIENTS=32 SECONDS_PER_RUN=20 RUNS="off on off on"
#        (PROFILE=debug builds without optimizations: a smoke run, not a measurement)
#        BASELINE_BIN=path/to/an/older/partner-catalog and a run "base" (delivery on with that
#        binary), e.g. RUNS="off base on off base on": before and after a change, in one run.
#        WAL_STATS=1: also each run's WAL by record type (pg_walinspect, created in the database
#        postgres): what the database wrote per purchase, and why.
set -euo pipefail
cd "$(dirname "$0")/.."

clients=${CLIENTS:-32}
seconds=${SECONDS_PER_RUN:-20}
runs=${RUNS:-off on off on}
pool=${DATABASE_MAX_CONNECTIONS:-16}
drain_limit=${DRAIN_LIMIT_SECS:-300}
server=postgres://postgres@127.0.0.1:5432
# This run's own databases and ports, so it can run beside anything else (dropped at exit).
run=$$_$(date +%s)
template=partner_catalog_webhooks_template_$run
db=partner_catalog_webhooks_$run
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
bind=127.0.0.1:$(free_port)
sink_bind=127.0.0.1:$(free_port)
target=${CARGO_TARGET_DIR:-target}
out=$target/bench-webhooks
mkdir -p "$out"
export PGHOST=127.0.0.1 PGUSER=postgres
. scripts/bench/cpu.sh

cleanup() {
    [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    [ -n "${sink_pid:-}" ] && kill "$sink_pid" 2>/dev/null && wait "$sink_pid" 2>/dev/null
    dropdb --if-exists --force "$db" >/dev/null 2>&1 || true
    dropdb --if-exists --force "$template" >/dev/null 2>&1 || true
    dropdb --if-exists --force "${template}_base" >/dev/null 2>&1 || true
}
trap cleanup EXIT

profile=${PROFILE:-release}
if [ "$profile" = release ]; then
    cargo build --release --quiet --bin partner-catalog --example loadgen --example webhook_sink
else
    cargo build --quiet --bin partner-catalog --example loadgen --example webhook_sink
fi
bin=$target/$profile/partner-catalog
loadgen=$target/$profile/examples/loadgen
sink=$target/$profile/examples/webhook_sink

# A template per binary, each migrated by its own (a binary refuses a database migrated by a newer
# one): the same dataset on the schema each shipped with.
prepare_template() {
    DATABASE_URL="$server/$1" "$2" migrate >/dev/null
    "$loadgen" --database-url "$server/$1" seed
    # The seeded customers' events are history: a delivering instance starts past them.
    psql -q -v ON_ERROR_STOP=1 -d "$1" -c "
        insert into webhook_chain_marks (chain_id, seq) select chain_id, seq from event_chain_heads
        on conflict (chain_id) do update set seq = excluded.seq"
}
prepare_template "$template" "$bin"
case " $runs " in *" base "*) prepare_template "${template}_base" "${BASELINE_BIN:?a base run needs BASELINE_BIN}" ;; esac

q() { psql -Atq -v ON_ERROR_STOP=1 -d "$db" -c "$1"; }
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<< "$2"; }
# CPU ms over the run's purchases, in µs each.
per_purchase() { awk -v ms="$1" -v n="$purchases" 'BEGIN { printf "%.0f", n ? ms * 1000 / n : 0 }'; }
# The database's work so far: WAL records, WAL bytes, buffers read or hit in the run's database.
pg_work() {
    psql -Atq -F' ' -d postgres -c "select wal_records, wal_bytes,
        (select blks_hit + blks_read from pg_stat_database where datname = '$db') from pg_stat_wal"
}

printf '%s\n' "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; $(psql -Atc 'select version()' | cut -d, -f1); $clients clients, ${seconds} s per run, pool $pool"
rows=()
i=0
for mode in $runs; do
    i=$((i + 1))
    case $mode in
        on) delivery=true; service=$bin; from=$template ;;
        off) delivery=false; service=$bin; from=$template ;;
        base) delivery=true; service=$BASELINE_BIN; from=${template}_base ;;
        *) echo "unknown run $mode" >&2; exit 2 ;;
    esac
    dropdb --if-exists "$db" >/dev/null
    createdb -T "$from" "$db"
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    echo "== run $i: delivery $mode ($clients clients, ${seconds} s), load $load"
    if [ "$delivery" = true ]; then
        "$sink" --bind "$sink_bind" > "$out/sink-$i.txt" 2>&1 &
        sink_pid=$!
    fi
    DATABASE_URL="$server/$db" BIND=$bind METRICS_BIND=off DATABASE_MAX_CONNECTIONS=$pool \
        WEBHOOK_DELIVERY=$delivery WEBHOOK_ALLOW_PRIVATE=127.0.0.0/8 \
        "$service" serve > "$out/service-$i.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 50); do curl -fsS "http://$bind/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
    if [ "$delivery" = true ]; then
        for _ in $(seq 1 50); do curl -fsS "http://$sink_bind/stats" >/dev/null 2>&1 && break; sleep 0.2; done
        "$loadgen" --database-url "$server/$db" webhooks --url "http://$bind" --receiver "http://$sink_bind"
    fi
    service0=$(cpu_ms "$pid") postgres0=$(cpu_ms $(pgrep -u postgres)) sink0=$(cpu_ms ${sink_pid:-})
    read -r wal0 walb0 buf0 <<< "$(pg_work)"
    lsn0=$(psql -Atq -d postgres -c "select pg_current_wal_lsn()")
    "$loadgen" --database-url "$server/$db" run --url "http://$bind" --scenario spread \
        --clients "$clients" --seconds "$seconds" | tee "$out/loadgen-$i.txt"
    result=$(grep '^RESULT' "$out/loadgen-$i.txt")
    purchases=$(q "select count(*) from events where event_type = 'subscription_created'")

    if [ "$delivery" = true ]; then
        # Settled: every chain dispatched and no delivery pending.
        waited=0
        until [ "$(q "select (select count(*) from event_chain_heads h left join webhook_chain_marks m using (chain_id)
                              where h.seq > coalesce(m.seq, 0))
                           + (select count(*) from webhook_deliveries where state = 'pending')")" = 0 ]; do
            sleep 0.2
            waited=$((waited + 1))
            [ "$waited" -lt $((drain_limit * 5)) ] || { echo "not settled after ${drain_limit} s" >&2; break; }
        done
        states=$(q "select string_agg(state || ':' || n, ',' order by state)
                    from (select state, count(*) n from webhook_deliveries group by state) s")
        feed=$(q "select count(*) from partner_feed")
        # Disk per delivery (heap, indexes and TOAST): what each page's room for updates costs.
        table_bytes=$(q "select pg_total_relation_size('webhook_deliveries') / greatest(count(*), 1) from webhook_deliveries")
        sink_ms=$(( $(cpu_ms "$sink_pid") - sink0 ))
        kill -TERM "$sink_pid"; wait "$sink_pid" || true; sink_pid=
        cat "$out/sink-$i.txt"
        got=$(grep '^RESULT' "$out/sink-$i.txt")
        # Each purchase makes subscription.created for the selling partner and for the platform.
        expected=$((purchases * 2))
        distinct=$(field distinct "$got")
        drain=$(awk -v a="$(field last_at "$got")" -v b="$(field ended_at "$result")" 'BEGIN { printf "%.1f", a - b }')
        lag="$(field lag_p50 "$got") / $(field lag_p99 "$got") / $(field lag_max "$got")"
        complete=$([ "$distinct" = "$expected" ] && echo "yes" || echo "**NO**")
        echo "delivery: $expected notices expected, $distinct distinct arrived ($(field requests "$got") requests), deliveries $states, feed entries $feed, drain ${drain} s, webhook_deliveries $table_bytes bytes per delivery"
    else
        queued=$(q "select count(*) from webhook_deliveries")
        feed=$(q "select count(*) from partner_feed")
        expected=0; distinct=-; states="queued $queued, feed $feed"; drain=-; lag=-; complete=-; sink_ms=0
        [ "$queued" = 0 ] && [ "$feed" = 0 ] || { echo "delivery off, but $queued deliveries and $feed feed entries" >&2; exit 1; }
    fi
    # Before the service stops, while its connections' backends are alive.
    service_ms=$(( $(cpu_ms "$pid") - service0 )) postgres_ms=$(( $(cpu_ms $(pgrep -u postgres)) - postgres0 ))
    cpu="$(per_purchase "$service_ms") / $(per_purchase "$postgres_ms") / $(per_purchase "$sink_ms")"
    rss=$(awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$pid/status")
    kill "$pid"; wait "$pid" || true; pid=
    sleep 1
    read -r wal1 walb1 buf1 <<< "$(pg_work)"
    if [ -n "${WAL_STATS:-}" ]; then
        echo "WAL of run $i by record type, per purchase (count, bytes with full-page images):"
        psql -q -d postgres -c "create extension if not exists pg_walinspect" -c "
            select \"resource_manager/record_type\" as record, round(count::numeric / $purchases, 2) as count,
                   round(combined_size::numeric / $purchases) as bytes
            from pg_get_wal_stats('$lsn0', pg_current_wal_lsn(), true)
            where count > 0 order by count desc limit 30" | tee "$out/wal-$i.txt"
    fi
    work=$(awk -v r=$((wal1 - wal0)) -v b=$((walb1 - walb0)) -v k=$((buf1 - buf0)) -v n="$purchases" \
        'BEGIN { printf "%.1f / %.2f / %.0f", r / n, b / n / 1024, k / n }')
    rows+=("$i|$mode|$(field rps "$result")|$(field p50 "$result") / $(field p99 "$result")|$(field 5xx "$result")|$purchases|$expected|$distinct|$complete|$states|$lag|$drain|$cpu|$work|$rss|$load")
done

echo
echo "| run | delivery | purchases/s | purchase ms p50 / p99 | 5xx | purchases | notices expected | arrived (distinct) | all arrived | deliveries | lag ms p50 / p99 / max | drain s | CPU µs per purchase: service / PostgreSQL / receiver | per purchase: WAL records / WAL KiB / buffers | peak RSS MiB | load at start |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}" | awk -F'|' '{ printf "| %s |", $1; for (i = 2; i <= NF; i++) printf " %s |", $i; print "" }'
echo
# Mean purchases/s with delivery off and on, and on/off (the cost of delivery to the purchase path);
# the mean CPU per purchase of the service and PostgreSQL, on/off (delivery's own cost).
printf '%s\n' "${rows[@]}" | awk -F'|' '
    { n[$2]++; s[$2] += $3; split($13, c, " / "); cpu[$2] += c[1] + c[2]; rx[$2] += c[3]
      split($14, w, " / "); wal[$2] += w[1]; walk[$2] += w[2]; buf[$2] += w[3] }
    END {
        if (!n["off"]) exit
        off = s["off"] / n["off"]
        printf "purchases/s with delivery off: %.0f (mean of %d runs)\n", off, n["off"]
        split("base on", modes, " ")
        for (k = 1; k <= 2; k++) {
            m = modes[k]
            if (!n[m]) continue
            on = s[m] / n[m]
            printf "purchases/s with delivery %s: %.0f (mean of %d runs), %s/off %.3f: delivery costs %.1f %%\n",
                m, on, n[m], m, on / off, (1 - on / off) * 100
            printf "CPU µs per purchase, service + PostgreSQL: off %.0f, %s %.0f (%+.1f %%), and the receiver %.0f\n",
                cpu["off"] / n["off"], m, cpu[m] / n[m], (cpu[m] / n[m] / (cpu["off"] / n["off"]) - 1) * 100, rx[m] / n[m]
            printf "PostgreSQL per purchase, off / %s: WAL records %.1f / %.1f, WAL KiB %.2f / %.2f, buffers %.0f / %.0f (%+.1f %%)\n",
                m, wal["off"] / n["off"], wal[m] / n[m], walk["off"] / n["off"], walk[m] / n[m],
                buf["off"] / n["off"], buf[m] / n[m], (buf[m] / n[m] / (buf["off"] / n["off"]) - 1) * 100
        }
    }'
