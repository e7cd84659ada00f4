-- pgbench: a dry-run decision (POST /v1/purchase-decisions) as raw SQL, statement for statement as
-- the service ran it before issue 15: a read-only transaction with the visibility check, the offer
-- and the decision facts.
\set c random(1, :customers)
\set p :c % :partners + 1
\set m :c % 20
\set o case when :m < 8 or :m = 16 then 1 when :m < 11 or :m = 17 then 2 when :m < 14 then 3 else 4 end
begin;
set transaction isolation level repeatable read, read only;
select exists(select 1 from customer_partners
              where customer_id = ('00000000-0000-7000-8000-' || lpad(to_hex(:c::int), 12, '0'))::uuid
                and partner_id = ('00000000-0000-7000-9000-' || lpad(to_hex(:p::int), 12, '0'))::uuid);
select id, name, segment, product_kind, created_at from offers
  where id = ('00000000-0000-7000-a000-' || lpad(to_hex(:o::int), 12, '0'))::uuid;
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
commit;
