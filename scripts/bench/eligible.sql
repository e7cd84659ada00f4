-- pgbench: an eligible-offer listing (GET /v1/customers/{id}/eligible-offers) as raw SQL, statement
-- for statement as the service ran it before issue 15: a read-only transaction with the visibility
-- check, the decision facts, then the page of offers whose terms the rules allow (here the segments
-- the seeded qualification set may buy, as the rules in Rust would compute them; all license-based).
\set c random(1, :customers)
\set p :c % :partners + 1
\set m :c % 20
begin;
set transaction isolation level repeatable read, read only;
select exists(select 1 from customer_partners
              where customer_id = ('00000000-0000-7000-8000-' || lpad(to_hex(:c::int), 12, '0'))::uuid
                and partner_id = ('00000000-0000-7000-9000-' || lpad(to_hex(:p::int), 12, '0'))::uuid);
select c.special_qualifications, p.kind, p.reseller_qualifications
  from customers c, partners p
  where c.id = ('00000000-0000-7000-8000-' || lpad(to_hex(:c::int), 12, '0'))::uuid
    and p.id = ('00000000-0000-7000-9000-' || lpad(to_hex(:p::int), 12, '0'))::uuid;
select
  exists(select 1 from customer_partners
         where customer_id = ('00000000-0000-7000-8000-' || lpad(to_hex(:c::int), 12, '0'))::uuid
           and partner_id = ('00000000-0000-7000-9000-' || lpad(to_hex(:p::int), 12, '0'))::uuid),
  exists(select 1 from indirect_reseller_providers
         where reseller_id = ('00000000-0000-7000-9000-' || lpad(to_hex(:p::int), 12, '0'))::uuid),
  exists(select 1 from subscriptions
         where customer_id = ('00000000-0000-7000-8000-' || lpad(to_hex(:c::int), 12, '0'))::uuid
           and segment = 'gcc'),
  t.at, pv.version, pv.digest
  from (select clock_timestamp() as at) t join policy_versions pv on pv.version = policy_version_at(t.at);
select id, name, segment, product_kind, created_at from offers
  where (segment, product_kind) in (select s, 'license_based' from unnest(bench_allowed_segments(:m)) s)
    and created_at <= 'infinity' and id > '00000000-0000-0000-0000-000000000000'
  order by id limit 50;
commit;
