-- Auditor history: new event types, time-ordered ids stamped by the database, and per-chain hash
-- chains that make any rewrite of the (already append-only) event log detectable.
--
-- The canonical form hashed below is documented in the README ("For auditors") and implemented a
-- second time, independently, in Rust (`domain::audit`); `partner-catalog audit verify` recomputes
-- every hash with the Rust one, so the two must agree byte for byte.

alter table events drop constraint events_event_type_check;
alter table events add constraint events_event_type_check check (event_type in (
    'partner_created', 'partner_qualifications_set', 'partner_providers_set',
    'customer_created', 'customer_partner_linked', 'customer_qualifications_set',
    'offer_created', 'subscription_created', 'subscription_status_changed', 'purchase_denied',
    'idempotent_replay_served', 'token_created', 'token_revoked'));

-- The first 8 bytes of the UUIDv7 of an instant (RFC 9562, method 3): 48 bits of Unix milliseconds,
-- the version nibble 7, and 12 bits of sub-millisecond fraction. Microseconds map injectively and in
-- order onto those 12 bits, so an event id sorts exactly like its occurred_at, and a time range is an
-- id range on the primary key.
create function event_id_prefix(t timestamptz) returns bytea
    language sql stable parallel safe
    return int8send(
        (floor(extract(epoch from t) * 1000)::bigint << 16)
        | 28672 -- 0x7000, the version
        | floor((extract(epoch from t) * 1000 - floor(extract(epoch from t) * 1000)) * 4096)::bigint);

-- A new event id at `t`: the prefix above and the 64 random bits (variant included) of a v4 UUID.
create function event_id_at(t timestamptz) returns uuid
    language sql volatile parallel safe
    return encode(event_id_prefix(t) || substring(uuid_send(gen_random_uuid()) from 9 for 8), 'hex')::uuid;

-- The text hashed for an event. Every field is on its own line; the free-text fields (actor,
-- request_id) carry their length in bytes, the actor's role and partner follow the actor, so no value can imitate a separator, and the payload,
-- whose jsonb text form is deterministic, comes last. occurred_at is written as integer microseconds
-- since the Unix epoch so that no session setting (TimeZone, DateStyle) changes the text.
create function event_canonical(
    id uuid, chain_id uuid, chain_seq bigint, prev_hash bytea, occurred_at timestamptz,
    event_type text, customer_id uuid, partner_id uuid, actor text, actor_role text,
    actor_partner_id uuid, request_id text, payload jsonb
) returns text
    -- STABLE, not IMMUTABLE: the body uses stable built-ins (extract from timestamptz,
    -- convert_to), and only a function no stricter than its body is inlined by the planner; inlined,
    -- a hash costs microseconds instead of a per-call plan (10x, which bulk imports feel).
    language sql stable parallel safe
    -- `||` (not concat_ws) on purpose: a null where none may be makes the whole text null, and the
    -- not-null constraint on `hash` then refuses the row instead of hashing something ambiguous.
    return 'partner-catalog event v1' || E'\n'
        || id::text || E'\n'
        || chain_id::text || E'\n'
        || chain_seq::text || E'\n'
        || encode(prev_hash, 'hex') || E'\n'
        || ((extract(epoch from occurred_at) * 1000000)::bigint)::text || E'\n'
        || event_type || E'\n'
        || coalesce(customer_id::text, '') || E'\n'
        || coalesce(partner_id::text, '') || E'\n'
        || octet_length(actor)::text || ':' || actor || E'\n'
        || coalesce(actor_role, '-') || E'\n'
        || coalesce(actor_partner_id::text, '') || E'\n'
        || coalesce(octet_length(request_id)::text || ':' || request_id, '-') || E'\n'
        || payload::text;

-- SHA-256 of the UTF-8 bytes of the canonical text.
create function event_hash(
    id uuid, chain_id uuid, chain_seq bigint, prev_hash bytea, occurred_at timestamptz,
    event_type text, customer_id uuid, partner_id uuid, actor text, actor_role text,
    actor_partner_id uuid, request_id text, payload jsonb
) returns bytea
    language sql stable parallel safe
    return sha256(convert_to(event_canonical(id, chain_id, chain_seq, prev_hash, occurred_at,
        event_type, customer_id, partner_id, actor, actor_role, actor_partner_id, request_id, payload),
        'UTF8'));

-- Chains: an event about a customer is on that customer's chain (even when it names a partner too,
-- so a purchase never waits for its partner's chain); an event about a partner alone is on the
-- partner's chain; the rest (offers) on the catalog chain, whose id is the nil UUID. Customer and
-- partner ids are distinct UUIDs, so the chain id alone says which chain it is.
alter table events
    add column chain_id uuid not null
        generated always as (coalesce(customer_id, partner_id, '00000000-0000-0000-0000-000000000000')) stored,
    add column chain_seq bigint,
    add column prev_hash bytea,
    add column hash bytea;

-- The last link of every chain. Appending locks this one row, so appends serialize per chain only,
-- with O(1) work, and two events can never claim the same place in a chain.
create table event_chain_heads (
    chain_id  uuid   primary key,
    seq       bigint not null check (seq >= 0),
    hash      bytea  not null check (octet_length(hash) = 32)
);

-- Chain the events written before this migration, in id order per chain. The append-only trigger
-- is off for this one transaction only.
alter table events disable trigger events_append_only;
do $$
declare
    e events%rowtype;
    previous_chain uuid;
    seq bigint;
    prev bytea;
begin
    for e in select * from events order by chain_id, id loop
        if previous_chain is distinct from e.chain_id then
            if previous_chain is not null then
                insert into event_chain_heads values (previous_chain, seq, prev);
            end if;
            previous_chain := e.chain_id;
            seq := 0;
            prev := '\x0000000000000000000000000000000000000000000000000000000000000000';
        end if;
        seq := seq + 1;
        update events set chain_seq = seq, prev_hash = prev,
            hash = event_hash(e.id, e.chain_id, seq, prev, e.occurred_at, e.event_type,
                              e.customer_id, e.partner_id, e.actor, e.actor_role, e.actor_partner_id,
                              e.request_id, e.payload)
        where id = e.id
        returning hash into prev;
    end loop;
    if previous_chain is not null then
        insert into event_chain_heads values (previous_chain, seq, prev);
    end if;
end;
$$;
alter table events enable trigger events_append_only;

alter table events
    alter column chain_seq set not null,
    alter column prev_hash set not null,
    alter column hash set not null,
    add constraint events_chain_seq_positive check (chain_seq >= 1),
    add constraint events_hashes_are_sha256 check (octet_length(prev_hash) = 32 and octet_length(hash) = 32),
    -- The id encodes occurred_at (see event_id_prefix). Events written before this migration got
    -- their id from the service's clock and occurred_at from the database's, so the constraint is
    -- validated only when they happen to agree; it holds for every new row regardless.
    add constraint events_id_encodes_occurred_at
        check (substring(uuid_send(id) from 1 for 8) = event_id_prefix(occurred_at)) not valid;
do $$
begin
    if not exists (select 1 from events
                   where substring(uuid_send(id) from 1 for 8) <> event_id_prefix(occurred_at)) then
        alter table events validate constraint events_id_encodes_occurred_at;
    end if;
end;
$$;

-- A chain in order (verification), and no two events in one place of a chain.
create unique index events_chain_idx on events (chain_id, chain_seq);
-- "The newest events of one type" without walking the whole log.
create index events_type_idx on events (event_type, id);

-- Stamps and chains every new event, whoever writes it:
--  1. lock the chain's head: one upsert that creates it (seq 1, genesis hash) on the chain's first
--     event, or else takes the existing head's row lock and moves its seq on; either way it returns
--     this event's seq and the previous hash. One statement per event matters for bulk imports;
--  2. only then, when the writer gave no id, take the time and derive the id from it, so within a
--     chain occurred_at never goes backwards (clock permitting);
--  3. set chain_seq, prev_hash and hash (anything the writer put there is overwritten), and store
--     the hash in the head.
create function events_chain_append() returns trigger language plpgsql as $$
declare
    chain uuid := coalesce(new.customer_id, new.partner_id, '00000000-0000-0000-0000-000000000000');
begin
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

create trigger events_chain
    before insert on events
    for each row execute function events_chain_append();
