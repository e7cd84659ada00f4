-- The transactional core of partner-catalog.
--
-- Enumerations are `text` with CHECK constraints rather than PostgreSQL enum types: the values are
-- the API's wire values, adding one is a plain constraint swap inside a transactional migration, and
-- sqlx maps them to `String` without per-type overrides. The domain parses them back into Rust enums.

create table partners (
    id                       uuid primary key,
    name                     text        not null check (length(btrim(name)) between 1 and 200),
    kind                     text        not null check (kind in ('direct_bill_partner', 'indirect_provider', 'indirect_reseller')),
    -- The special programs the partner is authorized for (sorted, no duplicates; see R2).
    reseller_qualifications  text[]      not null default '{}'
        check (reseller_qualifications <@ array['education', 'gcc', 'nonprofit']::text[]),
    created_at               timestamptz not null default clock_timestamp(),
    -- Lets link rows below prove the kind of both ends with a foreign key.
    unique (id, kind)
);

-- An indirect reseller sells through the indirect providers it is connected to. The constant kind
-- columns and composite foreign keys make "reseller -> provider" the only representable link.
create table indirect_reseller_providers (
    reseller_id    uuid not null,
    reseller_kind  text not null default 'indirect_reseller' check (reseller_kind = 'indirect_reseller'),
    provider_id    uuid not null,
    provider_kind  text not null default 'indirect_provider' check (provider_kind = 'indirect_provider'),
    created_at     timestamptz not null default clock_timestamp(),
    primary key (reseller_id, provider_id),
    constraint indirect_reseller_providers_reseller_fkey
        foreign key (reseller_id, reseller_kind) references partners (id, kind),
    constraint indirect_reseller_providers_provider_fkey
        foreign key (provider_id, provider_kind) references partners (id, kind)
);
create index indirect_reseller_providers_provider_idx on indirect_reseller_providers (provider_id);

-- R3: the seven valid special qualification sets, canonical (sorted). Used by every table that
-- stores a set, so the list exists once in the database.
create function is_valid_qualification_set(qualifications text[]) returns boolean
    language sql immutable parallel safe
    return qualifications in (
        '{}'::text[],
        '{nonprofit}'::text[],
        '{education}'::text[],
        '{gcc}'::text[],
        '{state_owned_entity}'::text[],
        '{education,state_owned_entity}'::text[],
        '{gcc,state_owned_entity}'::text[]);

create table customers (
    id                        uuid primary key,
    name                      text        not null check (length(btrim(name)) between 1 and 200),
    -- Canonical (sorted) special qualification set; only the seven sets of R3 are representable.
    special_qualifications    text[]      not null default '{}'
        constraint customers_special_qualifications_valid
            check (is_valid_qualification_set(special_qualifications)),
    -- Bumped by every qualification change.
    version                   bigint      not null default 1 check (version >= 1),
    created_at                timestamptz not null default clock_timestamp()
);

create table customer_partners (
    customer_id  uuid        not null references customers (id),
    partner_id   uuid        not null references partners (id),
    created_at   timestamptz not null default clock_timestamp(),
    primary key (customer_id, partner_id)
);
create index customer_partners_partner_idx on customer_partners (partner_id);

create table offers (
    id            uuid primary key,
    name          text        not null check (length(btrim(name)) between 1 and 200),
    segment       text        not null check (segment in ('commercial', 'education', 'nonprofit', 'gcc')),
    product_kind  text        not null check (product_kind in ('license_based', 'software_subscription', 'perpetual_software', 'azure')),
    created_at    timestamptz not null default clock_timestamp(),
    -- R1: special prices exist only for license-based services.
    constraint offers_special_offer_is_license_based
        check (segment = 'commercial' or product_kind = 'license_based'),
    -- Lets subscriptions carry the offer's segment with a foreign key keeping it true.
    unique (id, segment)
);

-- Subscriptions are history: never deleted (see the trigger below). `segment` is copied from the
-- offer (and kept equal to it by the composite foreign key) so the R4 lookup is one index probe.
create table subscriptions (
    id           uuid primary key,
    customer_id  uuid        not null references customers (id),
    partner_id   uuid        not null references partners (id),
    offer_id     uuid        not null,
    segment      text        not null,
    quantity     integer     not null check (quantity between 1 and 1000000),
    status       text        not null default 'active' check (status in ('active', 'suspended', 'cancelled')),
    -- clock_timestamp(), not now(): the purchase takes the customer lock after its transaction began,
    -- and history must be ordered by when the decision was made under that lock.
    created_at   timestamptz not null default clock_timestamp(),
    constraint subscriptions_offer_fkey foreign key (offer_id, segment) references offers (id, segment)
);
create index subscriptions_customer_idx on subscriptions (customer_id, id);
-- R4: "does this customer have any GCC subscription in its history?"
create index subscriptions_customer_gcc_idx on subscriptions (customer_id) where segment = 'gcc';

-- Ordering systems retry; a key is answered with the outcome first stored for it. The row is written
-- in the purchase transaction itself, so a key never exists without the outcome it names, and an
-- allowed outcome never exists without its subscription.
create table idempotency_keys (
    key             text        primary key check (length(key) between 1 and 255),
    customer_id     uuid        not null references customers (id),
    request         jsonb       not null,
    outcome         jsonb       not null,
    subscription_id uuid        references subscriptions (id),
    created_at      timestamptz not null default clock_timestamp()
);

-- One append-only log of every state change and every purchase decision.
create table events (
    id           uuid primary key,
    occurred_at  timestamptz not null default clock_timestamp(),
    actor        text        not null default 'system',
    request_id   text,
    customer_id  uuid        references customers (id),
    partner_id   uuid        references partners (id),
    event_type   text        not null check (event_type in (
        'partner_created', 'partner_qualifications_set', 'partner_providers_set',
        'customer_created', 'customer_partner_linked', 'customer_qualifications_set',
        'offer_created', 'subscription_created', 'purchase_denied')),
    payload      jsonb       not null
);
create index events_customer_idx on events (customer_id, id) where customer_id is not null;
create index events_partner_idx on events (partner_id, id) where partner_id is not null;

create function reject_history_rewrite() returns trigger language plpgsql as $$
begin
    raise exception '% on % is not allowed: it is history', tg_op, tg_table_name
        using errcode = 'restrict_violation';
end;
$$;

create trigger events_append_only
    before update or delete on events
    for each row execute function reject_history_rewrite();
create trigger events_no_truncate
    before truncate on events
    for each statement execute function reject_history_rewrite();

create trigger subscriptions_never_deleted
    before delete on subscriptions
    for each row execute function reject_history_rewrite();
create trigger subscriptions_no_truncate
    before truncate on subscriptions
    for each statement execute function reject_history_rewrite();
