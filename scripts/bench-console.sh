#!/usr/bin/env bash
# Console page benchmark (BENCHMARKS.md, "Console pages"): every page of the console, against the
# release build, over a database of CUSTOMERS customers and EVENTS events:
#   - `dev seed` writes the chained events about the customers and partners;
#   - SQL then gives the customers what real ones have: a first qualification version, a set for a
#     third of them, a partner each, an external reference, and subscriptions for some;
#   - each page is requested REQUESTS times in a row (after 3 warm-up requests), signed in as the
#     role that uses it; the service's own latency (its request log) and curl's are reported.
# Then it drops the database (KEEP=1 keeps it; REUSE=1 measures an existing one without seeding).
#
# Needs: PostgreSQL on 127.0.0.1:5432 (user postgres, trust), psql, curl, a Rust toolchain.
# Usage: scripts/bench-console.sh     (CUSTOMERS=1000000 EVENTS=10000000 REQUESTS=50)
set -euo pipefail
cd "$(dirname "$0")/.."

CUSTOMERS=${CUSTOMERS:-1000000}
EVENTS=${EVENTS:-10000000}
REQUESTS=${REQUESTS:-50}
DB=${BENCH_DB:-partner_catalog_console_bench}
PORT=${PORT:-18081}
OUT=${OUT:-target/bench-console}
SERVER=postgres://postgres@127.0.0.1:5432
URL=$SERVER/$DB
BASE=http://127.0.0.1:$PORT
BIN=${CARGO_TARGET_DIR:-target}/release/partner-catalog
PASSWORD='bench password, long enough'

mkdir -p "$OUT"
psql() { command psql -X -q -v ON_ERROR_STOP=1 "$URL" "$@"; }
step() { printf '\n==> %s\n' "$*"; }

step "machine"
{
    echo "cpus: $(nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
    echo "memory: $(free -g | awk '/Mem:/ {print $2}') GiB, load: $(cut -d' ' -f1-3 /proc/loadavg)"
    command psql -X -At "$SERVER/postgres" -c "select version()"
} | tee "$OUT/machine.txt"

step "build (release)"
cargo build --release --quiet

if [ "${REUSE:-0}" != 1 ]; then
    step "seed $EVENTS events about $CUSTOMERS customers into $DB"
    command psql -X -q "$SERVER/postgres" -c "drop database if exists $DB with (force)"
    "$BIN" --database-url "$URL" migrate >/dev/null
    RUST_LOG=warn /usr/bin/time -f "seed wall %e s" \
        "$BIN" --database-url "$URL" dev seed --events "$EVENTS" --customers "$CUSTOMERS" 2>&1 | tee "$OUT/seed.txt"

    step "customers as real ones are: history, qualifications, partners, references, subscriptions"
    # The seed writes customers without a history (nothing reads it there); the console needs the
    # first version. A third get a special set (version 2), every customer one partner, a reference.
    psql <<'SQL'
insert into customer_qualification_history (id, customer_id, version, special_qualifications, reason, actor, valid_from)
select gen_random_uuid(), id, 1, '{}', 'seeded', 'dev-seed', created_at from customers;
insert into partner_profile_history (id, partner_id, version, reseller_qualifications, reason, actor, valid_from)
select gen_random_uuid(), id, 1, reseller_qualifications, 'seeded', 'dev-seed', created_at from partners;
with chosen as (
    select id, (array['{education}', '{nonprofit}', '{gcc}', '{state_owned_entity}'])[1 + (hashtext(id::text) & 3)]::text[] as q
    from customers where hashtext(id::text) % 3 = 0)
, hist as (
    insert into customer_qualification_history (id, customer_id, version, special_qualifications, evidence, reason, actor, valid_from)
    select gen_random_uuid(), id, 2, q, jsonb_build_object(q[1], 'REF-' || left(id::text, 8)), 'seeded', 'dev-seed', now() from chosen)
update customers c set special_qualifications = chosen.q, version = 2 from chosen where c.id = chosen.id;
with numbered as (select id, row_number() over (order by id) as n from customers)
update customers c set external_reference = 'CRM-' || n from numbered where c.id = numbered.id;
insert into customer_external_references (external_reference, customer_id)
select external_reference, id from customers;
with p as (select array_agg(id order by id) as ids from partners)
insert into customer_partners (customer_id, partner_id)
select c.id, p.ids[1 + abs(hashtext(c.id::text)) % array_length(p.ids, 1)] from customers c, p;
insert into offers (id, name, segment, product_kind)
select gen_random_uuid(), 'Offer ' || s || ' ' || k, s, k
from unnest(array['commercial', 'education', 'nonprofit', 'gcc']) s, unnest(array['license_based']) k;
insert into subscriptions (id, customer_id, partner_id, offer_id, segment, quantity, status)
select gen_random_uuid(), r.customer_id, r.partner_id, o.id, o.segment, 10, 'active'
from customer_partners r join customers c on c.id = r.customer_id
join offers o on o.segment = case
    when c.special_qualifications = '{}' then 'commercial' else c.special_qualifications[1] end
where c.special_qualifications <> '{state_owned_entity}' and abs(hashtext(c.id::text)) % 10 = 0;
vacuum analyze;
SQL
fi
psql -At -c "select 'customers: ' || count(*) from customers" -c "select 'events: ' || count(*) from events" \
    -c "select 'subscriptions: ' || count(*) from subscriptions" -c "select 'partners: ' || count(*) from partners" \
    -c "select 'database: ' || pg_size_pretty(pg_database_size(current_database()))" | tee "$OUT/sizes.txt"

step "users"
for role in back_office auditor operator; do
    "$BIN" --database-url "$URL" user list | grep -q " bench-$role " ||
        echo "$PASSWORD" | "$BIN" --database-url "$URL" user create --username "bench-$role" --role "$role" --password-stdin >/dev/null
done

step "start the service"
LOG_FORMAT=json RUST_LOG=info,sqlx=warn METRICS_BIND=off "$BIN" --database-url "$URL" --bind "127.0.0.1:$PORT" serve \
    >"$OUT/service.log" 2>&1 &
SERVICE=$!
trap 'kill $SERVICE 2>/dev/null || true; [ "${KEEP:-0}" = 1 ] || [ "${REUSE:-0}" = 1 ] || command psql -X -q "$SERVER/postgres" -c "drop database if exists $DB with (force)"' EXIT
for _ in $(seq 1 50); do curl -sf "$BASE/readyz" >/dev/null && break; sleep 0.2; done

sign_in() { # role -> cookie jar
    curl -sf -o /dev/null -c "$OUT/$1.jar" --data-urlencode "username=bench-$1" \
        --data-urlencode "password=$PASSWORD" "$BASE/sign-in"
}
for role in back_office auditor operator; do sign_in "$role"; done

BUSY=$(psql -At -c "select chain_id from event_chain_heads h join customers c on c.id = h.chain_id order by seq desc limit 1")
TYPICAL=$(psql -At -c "select id from customers where special_qualifications = '{education}' order by id
    offset (select count(*) / 2 from customers where special_qualifications = '{education}') limit 1")
PARTNER=$(psql -At -c "select partner_id from customer_partners where customer_id = '$TYPICAL'")
EVENT=$(psql -At -c "select id from events where customer_id = '$BUSY' order by id desc limit 1")
REFERENCE=$(psql -At -c "select external_reference from customers where id = '$TYPICAL'")

# Sequential requests to one page; the service's logged latency (median, p95, max) and curl's.
measure() { # name, role, path
    local url="$BASE$3" first code
    code=$(curl -s -o "$OUT/page-$1.html" -w '%{http_code}' -b "$OUT/$2.jar" "$url")
    [ "$code" = 200 ] || { echo "$1: $3 answered $code" >&2; exit 1; }
    for _ in 1 2; do curl -sf -o /dev/null -b "$OUT/$2.jar" "$url"; done
    first=$(($(wc -l <"$OUT/service.log") + 1))
    for _ in $(seq 1 "$REQUESTS"); do curl -sf -o /dev/null -b "$OUT/$2.jar" -w '%{time_total}\n' "$url"; done >"$OUT/client-$1.txt"
    sleep 0.2
    tail -n +"$first" "$OUT/service.log" | grep -o '"latency":"[0-9]* μs"' | grep -o '[0-9]*' | sort -n >"$OUT/server-$1.txt"
    awk -v name="$1" '{ v[NR] = $1 } END {
        printf "| %-26s | %6.1f | %6.1f | %6.1f |", name, v[int(NR/2)+1] / 1000, v[int(NR*0.95)] / 1000, v[NR] / 1000 }' \
        "$OUT/server-$1.txt"
    sort -n "$OUT/client-$1.txt" | awk '{ v[NR] = $1 } END { printf " %6.1f |\n", v[int(NR/2)+1] * 1000 }'
}

step "pages, $REQUESTS requests each (ms)"
{
echo "| page | median | p95 | max | curl median |"
echo "|---|---:|---:|---:|---:|"
measure home back_office "/"
measure customers-name-rare back_office "/customers?q=customer%20123456"
measure customers-name-common back_office "/customers?q=seed"
measure customers-qualification back_office "/customers?qualification=gcc"
measure customers-none back_office "/customers?qualification=none"
measure customers-reference back_office "/customers?reference=$REFERENCE"
measure customer-busy back_office "/customers/$BUSY"
measure customer-eligibility back_office "/customers/$TYPICAL?partner=$PARTNER"
measure customer-eligibility-as-of back_office "/customers/$TYPICAL?partner=$PARTNER&as_of=2026-06-30"
measure partners back_office "/partners?q=partner%2042"
measure partner back_office "/partners/$PARTNER"
measure offers operator "/offers"
measure import back_office "/import"
measure audit-newest auditor "/audit"
measure audit-customer auditor "/audit?customer_id=$BUSY"
measure audit-type auditor "/audit?type=customer_qualifications_set"
measure audit-event auditor "/audit/events/$EVENT"
measure access operator "/access"
measure account auditor "/account"
} | tee "$OUT/pages.md"
