-- Ready to shard by customer on Citus. On plain PostgreSQL this is what runs, and it changes no
-- behaviour but the scope of idempotency keys; on Citus it is what lets each table be distributed.
--
-- Where every table goes is declared once, in `src/db/sharding.rs` (`TABLES`), documented in the
-- README ("Scaling out: Citus") and checked against the catalog by `tests/api/sharding.rs`:
--   by customer (colocated): customers (id), customer_partners, customer_qualification_history,
--                            subscriptions, idempotency_keys (customer_id);
--   by chain:                events, event_chain_heads (chain_id; a customer's chain id is its id,
--                            so its events are colocated with it);
--   reference:               partners, indirect_reseller_providers, partner_profile_history,
--                            offers, api_tokens.
-- Citus requires every primary key and unique index of a distributed table to include its
-- distribution column, and foreign keys between distributed tables to include it on both sides.

-- Subscriptions: keyed within their customer. The old single-column index is the new key's prefix.
alter table idempotency_keys drop constraint idempotency_keys_subscription_id_fkey;
alter table subscriptions drop constraint subscriptions_pkey;
alter table subscriptions add constraint subscriptions_pkey primary key (customer_id, id);
drop index subscriptions_customer_idx;

-- A subscription never moves to another customer: on Citus its customer is where it lives, and the
-- distribution column cannot be updated there; here a trigger says so just as firmly.
create function reject_customer_change() returns trigger language plpgsql as $$
begin
    raise exception 'the customer of a row of % never changes', tg_table_name
        using errcode = 'restrict_violation';
end;
$$;
create trigger subscriptions_customer_is_fixed
    before update of customer_id on subscriptions
    for each row when (new.customer_id is distinct from old.customer_id)
    execute function reject_customer_change();

-- Qualification history: keyed within its customer.
alter table customer_qualification_history drop constraint customer_qualification_history_pkey;
alter table customer_qualification_history
    add constraint customer_qualification_history_pkey primary key (customer_id, id);

-- Idempotency keys: scoped per customer (see the README for why), so a purchase touches one
-- customer's shard only. The stored subscription is referenced within that customer.
alter table idempotency_keys drop constraint idempotency_keys_pkey;
alter table idempotency_keys add constraint idempotency_keys_pkey primary key (customer_id, owner, key);
alter table idempotency_keys add constraint idempotency_keys_subscription_fkey
    foreign key (customer_id, subscription_id) references subscriptions (customer_id, id);

-- Events: distributed by chain. A distribution column cannot be generated, so `chain_id` becomes a
-- plain column that every writer names, with its old value kept true by a CHECK (hashes cover it,
-- so no value changes). The foreign key to customers cannot exist between tables distributed by
-- different columns: customers are never deleted (trigger below) and every writer of a customer's
-- event has read or locked that customer in the same transaction.
alter table events alter column chain_id drop expression;
alter table events add constraint events_chain_id_is_its_subject
    check (chain_id = coalesce(customer_id, partner_id, '00000000-0000-0000-0000-000000000000'));
alter table events drop constraint events_customer_id_fkey;
alter table events drop constraint events_pkey;
alter table events add constraint events_pkey primary key (chain_id, id);
-- The id alone still finds an event (audit search by time range walks ids).
create index events_id_idx on events (id);

create trigger customers_never_deleted
    before delete on customers
    for each row execute function reject_history_rewrite();
create trigger customers_no_truncate
    before truncate on customers
    for each statement execute function reject_history_rewrite();

-- The chaining trigger takes the chain from the row (the writer names it; the CHECK above holds it
-- to the subject), and fills it in for a writer that does not, on plain PostgreSQL.
create or replace function events_chain_append() returns trigger language plpgsql as $$
declare
    chain uuid := coalesce(new.chain_id, new.customer_id, new.partner_id, '00000000-0000-0000-0000-000000000000');
begin
    new.chain_id := chain;
    insert into event_chain_heads as h (chain_id, seq, hash)
    values (chain, 1, '\x0000000000000000000000000000000000000000000000000000000000000000')
    on conflict (chain_id) do update set seq = h.seq + 1
    returning h.seq, h.hash into new.chain_seq, new.prev_hash;
    if new.id is null then
        new.occurred_at := clock_timestamp();
        new.id := event_id_at(new.occurred_at);
    end if;
    new.hash := event_hash(new.id, chain, new.chain_seq, new.prev_hash, new.occurred_at,
        new.event_type, new.customer_id, new.partner_id, new.actor, new.actor_role,
        new.actor_partner_id, new.request_id, new.payload);
    update event_chain_heads set hash = new.hash where chain_id = chain;
    return new;
end;
$$;
