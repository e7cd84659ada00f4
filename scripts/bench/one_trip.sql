-- The database's limit (issue 15): the same durable work as scripts/bench/{purchase,decide,
-- qualification}.sql, done by PostgreSQL in ONE round trip per transaction (one call of a function
-- holding the statements). Installed into the benchmark's template database by scripts/bench.sh;
-- never part of the service's schema. Ids follow examples/loadgen.rs (customers …8000-…, partners
-- …9000-…, offers …a000-…).

create or replace function bench_id(kind text, n int) returns uuid
language sql immutable as $$
    select ('00000000-0000-7000-' || kind || '-' || lpad(to_hex(n), 12, '0'))::uuid
$$;

-- A purchase: key lock, key lookup, offer, customer and partner locks, then the relationship,
-- provider and GCC-history facts in a fresh statement (a new snapshot under READ COMMITTED, as the
-- service reads them after the locks), the subscription (guarded like purchase.sql: R4 holds in the
-- data), its chained event and the idempotency row.
create or replace function bench_purchase(c int, p int, o int, k text) returns uuid
language plpgsql as $$
declare
    v_customer uuid := bench_id('8000', c);
    v_partner uuid := bench_id('9000', p);
    v_owner text := 'partner:' || p;
    v_offer record;
    v_quals text[];
    v_kind text;
    v_partner_quals text[];
    v_related boolean;
    v_has_provider boolean;
    v_gcc_history boolean;
    v_decided_at timestamptz;
    v_policy_version integer;
    v_sub record;
begin
    perform policy_lock_shared();
    perform pg_advisory_xact_lock(1346589249, hashtext(v_customer::text || ' ' || v_owner || ' ' || k));
    perform 1 from idempotency_keys
        where customer_id = v_customer and owner = v_owner and key = k;
    if found then
        return null;
    end if;
    select id, name, segment, product_kind, created_at into v_offer
        from offers where id = bench_id('a000', o);
    select cu.special_qualifications, pa.kind, pa.reseller_qualifications
        into v_quals, v_kind, v_partner_quals
        from customers cu, partners pa
        where cu.id = v_customer and pa.id = v_partner
        for no key update of cu for share of pa;
    select exists(select 1 from customer_partners
                  where customer_id = v_customer and partner_id = v_partner),
           exists(select 1 from indirect_reseller_providers where reseller_id = v_partner),
           exists(select 1 from subscriptions where customer_id = v_customer and segment = 'gcc'),
           t.at, pv.version
        into v_related, v_has_provider, v_gcc_history, v_decided_at, v_policy_version
        from (select clock_timestamp() as at) t
        join policy_versions pv on pv.version = policy_version_at(t.at);
    insert into subscriptions (id, customer_id, partner_id, offer_id, segment, quantity, created_at,
                               policy_version)
        select gen_random_uuid(), v_customer, v_partner, v_offer.id, v_offer.segment, 5, v_decided_at,
               v_policy_version
        where not (v_gcc_history and v_offer.segment <> 'gcc')
        returning id, segment, status, created_at into v_sub;
    if v_sub.id is null then
        raise exception 'the guard refused a purchase (R4)';
    end if;
    insert into events (chain_id, actor, actor_role, actor_partner_id, request_id, customer_id,
                        partner_id, event_type, payload)
        values (v_customer, 'pgbench', 'sales_agent', v_partner, gen_random_uuid()::text, v_customer,
                v_partner, 'subscription_created',
                jsonb_build_object('subscription_id', v_sub.id, 'offer_id', v_offer.id,
                                   'segment', v_offer.segment, 'quantity', 5,
                                   'customer_qualifications', to_jsonb(v_quals),
                                   'idempotency_key', k, 'policy_version', v_policy_version,
                                   'decided_at', v_decided_at));
    insert into idempotency_keys (owner, key, customer_id, request, outcome, subscription_id)
        values (v_owner, k, v_customer,
                jsonb_build_object('customer_id', c, 'partner_id', p, 'offer_id', v_offer.id, 'quantity', 5),
                jsonb_build_object('result', 'created', 'subscription',
                    jsonb_build_object('id', v_sub.id, 'segment', v_sub.segment, 'quantity', 5,
                                       'status', v_sub.status, 'created_at', v_sub.created_at)),
                v_sub.id);
    return v_sub.id;
end
$$;

-- A dry-run decision: the visibility check, the offer and the decision facts, in one snapshot (a
-- stable SQL function, as the service's read-only repeatable-read transaction).
create or replace function bench_decide(c int, p int, o int) returns table (
    visible boolean, segment text, product_kind text, special_qualifications text[], kind text,
    reseller_qualifications text[], related boolean, has_provider boolean, gcc_history boolean,
    policy_version integer)
language sql stable as $$
    select exists(select 1 from customer_partners
                  where customer_id = bench_id('8000', c) and partner_id = bench_id('9000', p)),
           o2.segment, o2.product_kind, cu.special_qualifications, pa.kind, pa.reseller_qualifications,
           exists(select 1 from customer_partners
                  where customer_id = bench_id('8000', c) and partner_id = bench_id('9000', p)),
           exists(select 1 from indirect_reseller_providers where reseller_id = bench_id('9000', p)),
           exists(select 1 from subscriptions where customer_id = bench_id('8000', c) and segment = 'gcc'),
           policy_version_at(clock_timestamp())
    from offers o2, customers cu, partners pa
    where o2.id = bench_id('a000', o) and cu.id = bench_id('8000', c) and pa.id = bench_id('9000', p)
$$;

-- A qualification change: lock the customer, read its current set, write the new version, its
-- history row and its event (the new set is the seeded one, as qualification.sql).
create or replace function bench_set_qualifications(c int) returns bigint
language plpgsql as $$
declare
    v_customer uuid := bench_id('8000', c);
    v_version bigint;
    v_quals text[];
begin
    perform policy_lock_shared();
    perform version from customers where id = v_customer for no key update;
    perform special_qualifications, evidence from customer_qualification_history
        where customer_id = v_customer order by version desc limit 1;
    update customers
        set special_qualifications = (array['{}','{}','{}','{}','{}','{}','{}','{}','{education}',
              '{education}','{education}','{nonprofit}','{nonprofit}','{nonprofit}','{gcc}','{gcc}',
              '{state_owned_entity}','{education,state_owned_entity}','{gcc,state_owned_entity}',
              '{gcc,state_owned_entity}'])[c % 20 + 1]::text[],
            version = version + 1
        where id = v_customer
        returning version, special_qualifications into v_version, v_quals;
    insert into customer_qualification_history (id, customer_id, version, special_qualifications,
                                                evidence, reason, actor)
        values (gen_random_uuid(), v_customer, v_version, v_quals, '{}', 'pgbench', 'pgbench');
    insert into events (actor, actor_role, customer_id, event_type, payload)
        values ('pgbench', 'back_office', v_customer, 'customer_qualifications_set',
                jsonb_build_object('after', v_quals::text, 'reason', 'pgbench'));
    return v_version;
end
$$;

-- The segments the seeded qualification set of customer number c (m = c % 20, as loadgen seeds
-- them) may buy: what the rules in Rust compute for an eligible-offer listing, written out for the
-- benchmark's SQL sides only.
create or replace function bench_allowed_segments(m int) returns text[]
language sql immutable as $$
    select case when m < 8 or m = 16 then array['commercial']
                when m < 11 or m = 17 then array['commercial', 'education']
                when m < 14 then array['commercial', 'nonprofit']
                else array['gcc'] end
$$;

-- An eligible-offer listing: the visibility check, the decision facts and the page of allowed
-- offers, in one statement (one snapshot).
create or replace function bench_eligible(c int, p int, m int) returns table (
    related boolean, special_qualifications text[], kind text, reseller_qualifications text[],
    has_provider boolean, gcc_history boolean, policy_version integer, offer_ids uuid[])
language sql stable as $$
    select exists(select 1 from customer_partners
                  where customer_id = bench_id('8000', c) and partner_id = bench_id('9000', p)),
           cu.special_qualifications, pa.kind, pa.reseller_qualifications,
           exists(select 1 from indirect_reseller_providers where reseller_id = bench_id('9000', p)),
           exists(select 1 from subscriptions where customer_id = bench_id('8000', c) and segment = 'gcc'),
           policy_version_at(clock_timestamp()),
           array(select o.id from offers o
                 where (o.segment, o.product_kind) in
                       (select s, 'license_based' from unnest(bench_allowed_segments(m)) s)
                 order by o.id limit 50)
    from customers cu, partners pa
    where cu.id = bench_id('8000', c) and pa.id = bench_id('9000', p)
$$;
