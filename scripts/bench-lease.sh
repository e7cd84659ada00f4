#!/usr/bin/env bash
# The webhook sender's lease (src/db/webhooks.rs `lease`) over a backlog, with and without the
# index on pending deliveries (BENCHMARKS.md "Webhook delivery", "The lease over a backlog").
#
# For each shape (customers, delivered deliveries per customer, pending per customer) it fills
# `webhook_deliveries` of a freshly migrated database, then times the lease's selection (`explain
# analyze`, in a transaction rolled back, so nothing is leased) five times with the index and five
# times without it (dropped inside the same kind of transaction), alternating. Prints milliseconds.
#
# Usage: scripts/bench-lease.sh   SHAPES="4:200:700 32:1000:100 2000:20:5"
set -euo pipefail
cd "$(dirname "$0")/.."

shapes=${SHAPES:-4:200:700 32:1000:100 2000:20:5}
db=partner_catalog_lease_$$_$(date +%s)
export PGHOST=127.0.0.1 PGUSER=postgres
trap 'dropdb --if-exists --force "$db" >/dev/null 2>&1 || true' EXIT
createdb "$db"
DATABASE_URL="postgres://postgres@127.0.0.1:5432/$db" cargo run --quiet --release -- migrate >/dev/null

# The selection of `lease` as the service sends it (its update of the selected rows left out).
lease="select d.chain_id from webhook_deliveries d
  join webhook_endpoints ep on ep.id = d.endpoint_id and ep.disabled_at is null
  where d.state = 'pending' and d.next_attempt_at <= now()
    and (d.lease_until is null or d.lease_until < now())
    and not exists (select 1 from webhook_deliveries p
                    where p.chain_id = d.chain_id and p.endpoint_id = d.endpoint_id
                      and p.chain_seq < d.chain_seq and p.state = 'pending')
  order by d.next_attempt_at limit 256 for update of d skip locked"
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
    for _ in 1 2 3 4 5; do
        with+=("$(psql -qAtX "$db" -c begin -c "explain (analyze, format json) $lease" -c rollback | ms)")
        without+=("$(psql -qAtX "$db" -c begin -c "drop index webhook_deliveries_pending_idx" \
            -c "explain (analyze, format json) $lease" -c rollback | ms)")
    done
    echo "| $chains | $delivered | $pending | ${with[*]} | ${without[*]} |"
done
