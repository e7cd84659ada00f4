-- pgbench: the purchase transaction of app::purchases::purchase as raw SQL, statement for statement
-- as the service ran it before it merged statements (BEGIN, 8 statements, COMMIT: 10 round trips;
-- the service now needs 8), over loadgen's dataset; with the policy version's lock and read
-- (issue 14) folded into the statements the service folds them into.
-- Variables: customers (10000) and partners (10), set by scripts/bench.sh with -D.
\set c random(1, :customers)
\set p :c % :partners + 1
\set m :c % 20
\set o case when :m < 8 or :m = 16 then 1 when :m < 11 or :m = 17 then 2 when :m < 14 then 3 else 4 end
\set k random(1, 2000000000)
begin;
select policy_lock_shared(), pg_advisory_xact_lock(1346589249, hashtext(('00000000-0000-7000-8000-' || lpad(to_hex(:c::int), 12, '0'))::uuid::text || ' ' || 'partner:' || :p::text || ' ' || 'pgb-' || :client_id::text || '-' || :k::text));
select request, outcome from idempotency_keys
  where customer_id = ('00000000-0000-7000-8000-' || lpad(to_hex(:c::int), 12, '0'))::uuid
    and owner = 'partner:' || :p::text and key = 'pgb-' || :client_id::text || '-' || :k::text;
select id, name, segment, product_kind, created_at from offers
  where id = ('00000000-0000-7000-a000-' || lpad(to_hex(:o::int), 12, '0'))::uuid \gset
select c.special_qualifications, p.kind, p.reseller_qualifications
  from customers c, partners p
  where c.id = ('00000000-0000-7000-8000-' || lpad(to_hex(:c::int), 12, '0'))::uuid
    and p.id = ('00000000-0000-7000-9000-' || lpad(to_hex(:p::int), 12, '0'))::uuid
  for no key update of c for share of p \gset
select
  exists(select 1 from customer_partners
         where customer_id = ('00000000-0000-7000-8000-' || lpad(to_hex(:c::int), 12, '0'))::uuid
           and partner_id = ('00000000-0000-7000-9000-' || lpad(to_hex(:p::int), 12, '0'))::uuid) as related,
  exists(select 1 from indirect_reseller_providers
         where reseller_id = ('00000000-0000-7000-9000-' || lpad(to_hex(:p::int), 12, '0'))::uuid) as has_provider,
  exists(select 1 from subscriptions
         where customer_id = ('00000000-0000-7000-8000-' || lpad(to_hex(:c::int), 12, '0'))::uuid
           and segment = 'gcc') as gcc_history,
  t.at as decided_at, pv.version as policy_version, pv.digest
  from (select clock_timestamp() as at) t join policy_versions pv on pv.version = policy_version_at(t.at) \gset
-- The rules in Rust would deny a non-GCC purchase after a GCC one (R4); the guard keeps the data true.
insert into subscriptions (id, customer_id, partner_id, offer_id, segment, quantity, created_at, policy_version)
  select gen_random_uuid(), ('00000000-0000-7000-8000-' || lpad(to_hex(:c::int), 12, '0'))::uuid,
         ('00000000-0000-7000-9000-' || lpad(to_hex(:p::int), 12, '0'))::uuid, :id::uuid, :segment::text, 5,
         :decided_at::timestamptz, :policy_version::integer
  where not (:gcc_history::boolean and :segment::text <> 'gcc')
  returning id as sid, customer_id, partner_id, offer_id, segment, quantity, status, created_at \gset
insert into events (chain_id, actor, actor_role, actor_partner_id, request_id, customer_id, partner_id, event_type, payload)
  values (('00000000-0000-7000-8000-' || lpad(to_hex(:c::int), 12, '0'))::uuid, 'pgbench', 'sales_agent', ('00000000-0000-7000-9000-' || lpad(to_hex(:p::int), 12, '0'))::uuid,
          gen_random_uuid()::text,
          ('00000000-0000-7000-8000-' || lpad(to_hex(:c::int), 12, '0'))::uuid,
          ('00000000-0000-7000-9000-' || lpad(to_hex(:p::int), 12, '0'))::uuid,
          'subscription_created',
          jsonb_build_object('subscription_id', :sid::text, 'offer_id', :id::text, 'segment', :segment::text,
                             'quantity', 5, 'customer_qualifications', to_jsonb(:special_qualifications::text[]),
                             'idempotency_key', 'pgb-' || :client_id::text || '-' || :k::text,
                             'policy_version', :policy_version::integer, 'decided_at', :decided_at::text));
insert into idempotency_keys (owner, key, customer_id, request, outcome, subscription_id)
  values ('partner:' || :p::text, 'pgb-' || :client_id::text || '-' || :k::text,
          ('00000000-0000-7000-8000-' || lpad(to_hex(:c::int), 12, '0'))::uuid,
          jsonb_build_object('customer_id', :c::int, 'partner_id', :p::int, 'offer_id', :id::text, 'quantity', 5),
          jsonb_build_object('result', 'created', 'subscription', jsonb_build_object('id', :sid::text,
            'segment', :segment::text, 'quantity', 5, 'status', 'active', 'created_at', now())),
          :sid::uuid);
commit;
