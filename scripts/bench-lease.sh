#!/usr/bin/env bash
# The webhook sender's lease (src/db/webhooks.rs `lease`) over a backlog, with and without the
# index on pending deliveries (BENCHMARKS.md "Webhook delivery", "The lease over a backlog").
#
# For each shape (customers, delivered deliveries per customer, pending per customer) it fills
# `webhook_deliveries` of a freshly migrated database, then times the lease (`explain analyze` of
# `webhook_lease`, in a transaction rolled back, so nothing is leased) five times with the index
# and five times without it (dropped inside the same kind of transaction), alternating which goes
# first.
# Prints milliseconds. The table is vacuumed after filling: no dead index entries, the best case
# for both.
#
# Usage: SHAPES="4:200:700 32:1000:100 2000:20:5 200:100:400" scripts/bench-lease.sh
set -euo pipefail
cd "$(dirname "$0")/.."

shapes=${SHAPES:-4:200:700 32:1000:100 2000:20:5 200:100:400}
db=partner_catalog_lease_$$_$(date +%s)
export PGHOST=127.0.0.1 PGUSER=postgres PGPORT=${PGPORT:-5432}
trap 'dropdb --if-exists --force "$db" >/dev/null 2>&1 || true' EXIT
createdb "$db"
DATABASE_URL="postgres://postgres@127.0.0.1:$PGPORT/$db" cargo run --quiet --release -- migrate >/dev/null

# The lease as the service calls it (`db::webhooks::lease`), its update included; rolled back.
lease="select * from webhook_lease('00000000-0000-7000-8000-0000000000aa', 15, 256)"
ms() { python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["Execution Time"])'; }

echo "| customers | delivered each | pending each | with the index (ms) | without (ms) |"
echo "|---|---|---|---|---|"
for shape in $shapes; do
    IFS=: read -r chains delivered pending <<< "$shape"
    psql -qX "$db" -v ON_ERROR_STOP=1 >/dev/null <<SQL
truncate webhook_deliveries, webhook_endpoints cascade;
insert into webhook_endpoints (id, url, secret, created_by)
values ('00000000-0000-7000-8000-0000000000e1', 'http://127.0.0.1:9/hook', 'bench', 'bench');
insert into webhook_deliveries (chain_id, endpoint_id, chain_seq, event_id, event_type, body, state,
                                attempts, next_attempt_at)
select c.id, '00000000-0000-7000-8000-0000000000e1', s, gen_random_uuid(), 'subscription.created', '{}',
       case when s <= $delivered then 'delivered' else 'pending' end, (s <= $delivered)::int,
       now() - interval '1 hour' + s * interval '1 ms'
from (select gen_random_uuid() as id from generate_series(1, $chains)) c,
     generate_series(1, $delivered + $pending) s;
vacuum analyze webhook_deliveries;
SQL
    with=() without=()
    time_with() { with+=("$(psql -qAtX "$db" -c begin -c "explain (analyze, format json) $lease" -c rollback | ms)"); }
    time_without() {
        without+=("$(psql -qAtX "$db" -c begin -c "drop index webhook_deliveries_pending_idx" \
            -c "explain (analyze, format json) $lease" -c rollback | ms)")
    }
    for i in 1 2 3 4 5; do
        if [ $((i % 2)) = 1 ]; then time_with; time_without; else time_without; time_with; fi
    done
    echo "| $chains | $delivered | $pending | ${with[*]} | ${without[*]} |"
done
