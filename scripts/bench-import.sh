#!/usr/bin/env bash
# Benchmark of the bulk customer import: N NDJSON lines (default 100,000; a realistic mix of the
# seven qualification sets with evidence) posted to a release build over its own database.
# Usage: scripts/bench-import.sh [LINES]
set -euo pipefail
cd "$(dirname "$0")/.."

lines=${1:-100000}
db=partner_catalog_bench_import
bind=127.0.0.1:18080
server=postgres://postgres@127.0.0.1:5432
file=$(mktemp /tmp/import-XXXXXX.ndjson)
trap 'kill "${pid:-}" 2>/dev/null || true; rm -f "$file"; dropdb --if-exists -h 127.0.0.1 -U postgres "$db" >/dev/null 2>&1 || true' EXIT

python3 - "$lines" > "$file" <<'PY'
import json, sys
sets = [([], 40), (["education"], 20), (["nonprofit"], 15), (["gcc"], 10),
        (["state_owned_entity"], 5), (["education", "state_owned_entity"], 5), (["gcc", "state_owned_entity"], 5)]
cycle = [s for s, weight in sets for _ in range(weight)]
for i in range(int(sys.argv[1])):
    quals = cycle[i % len(cycle)]
    print(json.dumps({"name": f"Customer {i:06d}", "special_qualifications": quals,
                      "evidence": {q: f"EV-{q}-{i}" for q in quals}, "reason": "onboarding batch"}))
PY

cargo build --release --quiet
dropdb --if-exists -h 127.0.0.1 -U postgres "$db"
DATABASE_URL="$server/$db" BIND=$bind METRICS_BIND=off RUST_LOG=warn ./target/release/partner-catalog serve &
pid=$!
for _ in $(seq 1 50); do curl -fsS "http://$bind/readyz" >/dev/null 2>&1 && break; sleep 0.2; done

token=$(DATABASE_URL="$server/$db" ./target/release/partner-catalog token create --role back_office \
    --label "import benchmark" --expires 1h | awk '/^secret:/ {print $2}')

printf 'lines: %s, bytes: %s\n' "$lines" "$(stat -c %s "$file")"
curl -sS -o /tmp/import-response.json -w 'status: %{http_code}, time: %{time_total} s\n' \
    -X POST "http://$bind/v1/customers:import" -H "authorization: Bearer $token" \
    -H 'content-type: application/x-ndjson' --data-binary "@$file"
python3 -c 'import json; r = json.load(open("/tmp/import-response.json")); print("imported:", r.get("imported"), "rejected:", r.get("rejected"))'
psql -h 127.0.0.1 -U postgres -d "$db" -Atc \
    "select 'customers: ' || count(*) from customers union all select 'history rows: ' || count(*) from customer_qualification_history union all select 'customer_created events: ' || count(*) from events where event_type = 'customer_created'"
echo "peak RSS of the service: $(grep VmHWM /proc/$pid/status | awk '{print $2, $3}')"
