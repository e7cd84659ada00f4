-- pgbench: a qualification change (PUT /v1/customers/{id}/qualifications) as raw SQL: lock the
-- customer, read the current set, write the new version, its history row and its event. The new set
-- is the customer's seeded one, so the purchase mix stays the same.
\set c random(1, :customers)
begin;
select policy_lock_shared();
select version from customers
  where id = ('00000000-0000-7000-8000-' || lpad(to_hex(:c::int), 12, '0'))::uuid for no key update;
select special_qualifications, evidence from customer_qualification_history
  where customer_id = ('00000000-0000-7000-8000-' || lpad(to_hex(:c::int), 12, '0'))::uuid
  order by version desc limit 1;
select t.at, pv.version, pv.digest
  from (select clock_timestamp() as at) t join policy_versions pv on pv.version = policy_version_at(t.at);
update customers
  set special_qualifications = (array['{}','{}','{}','{}','{}','{}','{}','{}','{education}','{education}',
        '{education}','{nonprofit}','{nonprofit}','{nonprofit}','{gcc}','{gcc}','{state_owned_entity}',
        '{education,state_owned_entity}','{gcc,state_owned_entity}','{gcc,state_owned_entity}'])[:c::int % 20 + 1]::text[],
      version = version + 1
  where id = ('00000000-0000-7000-8000-' || lpad(to_hex(:c::int), 12, '0'))::uuid
  returning version, special_qualifications \gset
insert into customer_qualification_history (id, customer_id, version, special_qualifications, evidence, reason, actor)
  values (gen_random_uuid(), ('00000000-0000-7000-8000-' || lpad(to_hex(:c::int), 12, '0'))::uuid,
          :version::bigint, :special_qualifications::text[], '{}', 'pgbench', 'pgbench');
insert into events (actor, actor_role, customer_id, event_type, payload)
  values ('pgbench', 'back_office', ('00000000-0000-7000-8000-' || lpad(to_hex(:c::int), 12, '0'))::uuid,
          'customer_qualifications_set',
          jsonb_build_object('after', :special_qualifications::text, 'reason', 'pgbench'));
commit;
