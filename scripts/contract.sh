#!/usr/bin/env bash
# The API contract, checked against the live service (issue 7): schemathesis (from PyPI) reads
# /openapi.json and runs every default check, positive and negative data, and the stateful phase
# along the contract's links. Zero failures or the script fails.
#
# Starts the debug service on a fresh database with one token per role (schemathesis.toml sends
# each operation the token of the role that may call it) and a small seed, so generated requests
# reach real rows as well as missing ones.
#
# Usage: scripts/contract.sh      MAX_EXAMPLES=100 (per operation and phase)
#
# Runs beside anything else on the machine: schemathesis lives in a virtual environment of its own
# (target/contract/venv-<version>), and the service gets free ports and a database of this run's
# own, dropped at the end whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."

schemathesis_version=4.32.5
server=postgres://postgres@127.0.0.1:5432
db=partner_catalog_contract_$$_$(date +%s)
target=${CARGO_TARGET_DIR:-target}
out=$target/contract
mkdir -p "$out"
export PGHOST=127.0.0.1 PGUSER=postgres

# A port the kernel says is free now (another process could take it before the service binds it;
# on loopback, during one CI run, that race is theoretical).
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
bind=127.0.0.1:$(free_port)
metrics_bind=127.0.0.1:$(free_port)
base=http://$bind

cleanup() {
    [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    dropdb --if-exists --force "$db" >/dev/null 2>&1 || true
}
trap cleanup EXIT

venv=$out/venv-$schemathesis_version
st=$venv/bin/st
if [ "$("$st" --version 2>/dev/null)" != "st, version $schemathesis_version" ]; then
    rm -rf "$venv"
    if ! python3 -m venv "$venv"; then
        # Debian splits venv off python3.
        apt-get install -y -qq python3-venv >/dev/null
        python3 -m venv "$venv"
    fi
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "schemathesis==$schemathesis_version"
fi
"$st" --version

cargo build --quiet --bin partner-catalog
bin=$target/debug/partner-catalog
export DATABASE_URL=$server/$db
dropdb --if-exists --force "$db"
"$bin" migrate

token() { "$bin" token create --label contract "$@" | awk '/^secret:/ {print $2}'; }
export OPERATOR_TOKEN BACK_OFFICE_TOKEN AUDITOR_TOKEN SALES_TOKEN
OPERATOR_TOKEN=$(token --role operator)
BACK_OFFICE_TOKEN=$(token --role back_office)
AUDITOR_TOKEN=$(token --role auditor)

BIND=$bind METRICS_BIND=$metrics_bind RUST_LOG=warn "$bin" serve >"$out/service.log" 2>&1 &
pid=$!
for _ in $(seq 1 50); do curl -sf "$base/readyz" >/dev/null && break; sleep 0.2; done
curl -sf "$base/readyz" >/dev/null

# A partner qualified for every segment with a customer of each kind, so that generated
# purchases can succeed; the sales agent acts for that partner.
call() { curl -sf -H "Authorization: Bearer $1" -H 'content-type: application/json' "${@:2}"; }
partner=$(call "$BACK_OFFICE_TOKEN" -XPOST "$base/v1/partners" -d '{"name":"Contract Partner",
  "kind":"direct_bill_partner","reseller_qualifications":["education","nonprofit","gcc"],
  "evidence":{"education":"E-1","nonprofit":"N-1","gcc":"G-1"}}' | jq -r .id)
for quals in '["gcc"]' '["education"]' '[]'; do
    evidence=$(jq -c 'map({key: ., value: "EV-1"}) | from_entries' <<<"$quals")
    customer=$(call "$BACK_OFFICE_TOKEN" -XPOST "$base/v1/customers" \
        -d "{\"name\":\"Contract Customer\",\"special_qualifications\":$quals,\"evidence\":$evidence}" | jq -r .id)
    call "$BACK_OFFICE_TOKEN" -XPUT "$base/v1/customers/$customer/partners/$partner" >/dev/null
done
for segment in gcc education commercial; do
    offer=$(call "$OPERATOR_TOKEN" -XPOST "$base/v1/offers" \
        -d "{\"name\":\"Contract $segment\",\"segment\":\"$segment\",\"product_kind\":\"license_based\"}" | jq -r .id)
done
SALES_TOKEN=$(token --role sales_agent --partner "$partner")
# What generated purchases buy: the last ones made, a commercial offer for a commercial customer.
export SALE_CUSTOMER_ID=$customer SALE_PARTNER_ID=$partner SALE_OFFER_ID=$offer

"$st" --config-file scripts/contract/schemathesis.toml run "$base/openapi.json" \
    --max-examples "${MAX_EXAMPLES:-100}" \
    --report junit --report-dir "$out" \
    --seed 1 2>&1 | tee "$out/schemathesis.log"

# The metrics listener answered the run's requests too (a smoke check of METRICS_BIND).
metrics=$(curl -sf "http://$metrics_bind/metrics")
grep -q '^http_server_request_duration_seconds_count{' <<<"$metrics"
echo "metrics: served on $metrics_bind"
