-- The back-office console: people sign in with a username and password, in a session kept here.
-- Placement on Citus (src/db/sharding.rs): users and sessions are reference tables (small, global),
-- customer_external_references is distributed by its own key (see below).

-- Staff accounts. A user is a principal like a token: one role, partner roles bound to one partner;
-- events record its id as `actor`. Only the argon2id hash (PHC string) of the password is stored.
create table users (
    id                    uuid        primary key,
    username              text        not null unique check (username ~ '^[a-z0-9][a-z0-9._-]{0,63}$'),
    display_name          text        check (length(btrim(display_name)) between 1 and 200),
    password_hash         text        not null check (password_hash like '$argon2id$%'),
    role                  text        not null check (role in
        ('global_admin', 'admin_agent', 'sales_agent', 'back_office', 'auditor', 'operator')),
    partner_id            uuid        references partners (id),
    created_by            text        not null,
    created_at            timestamptz not null default now(),
    disabled_at           timestamptz,
    last_sign_in_at       timestamptz,
    -- Throttling: consecutive failed sign-ins, and until when the next attempt is refused.
    failed_sign_ins       integer     not null default 0 check (failed_sign_ins >= 0),
    sign_in_blocked_until timestamptz,
    constraint users_partner_roles_are_bound
        check ((role in ('global_admin', 'admin_agent', 'sales_agent')) = (partner_id is not null))
);
create index users_partner_idx on users (partner_id, id);

-- Console sessions. The cookie carries a random secret; only its SHA-256 is stored. A session ends
-- at `expires_at` (absolute), after the idle limit since `last_seen_at`, or when revoked.
create table sessions (
    id           uuid        primary key,
    secret_hash  bytea       not null unique check (length(secret_hash) = 32),
    user_id      uuid        not null references users (id),
    csrf_token   text        not null check (length(csrf_token) = 43),
    created_at   timestamptz not null default now(),
    last_seen_at timestamptz not null default now(),
    expires_at   timestamptz not null,
    revoked_at   timestamptz,
    user_agent   text        check (length(user_agent) <= 300)
);
create index sessions_user_idx on sessions (user_id, id);

-- Tokens show when they were last used (updated at most once a minute per token).
alter table api_tokens add column last_used_at timestamptz;

-- A customer's id in the reseller's own CRM, unique across customers, so importing a file twice
-- finds the customers of the first import instead of creating them again. Uniqueness across
-- customers cannot be a unique index of `customers` on Citus (it would have to include the
-- customer id), so it is claimed in a table of its own keyed by the reference (distributed by it),
-- and shown from the customer's own row.
alter table customers add column external_reference text check (
    length(external_reference) between 1 and 200 and external_reference !~ '[[:cntrl:]]');
create table customer_external_references (
    external_reference text primary key,
    customer_id        uuid not null
);

-- Case-insensitive substring search on names, fast on millions of customers.
create extension if not exists pg_trgm;
create index customers_name_trgm_idx on customers using gin (name gin_trgm_ops);
create index partners_name_trgm_idx on partners using gin (name gin_trgm_ops);
-- A partner's customers in customer order (the console's and the API's lists for partner users and
-- partner pages): the partner-only index could only fetch them all and sort them.
drop index customer_partners_partner_idx;
create index customer_partners_partner_idx on customer_partners (partner_id, customer_id);
create index customers_qualifications_idx on customers using gin (special_qualifications);
create index customers_external_reference_idx on customers (external_reference)
    where external_reference is not null;

alter table events drop constraint events_event_type_check;
alter table events add constraint events_event_type_check check (event_type in (
    'partner_created', 'partner_qualifications_set', 'partner_providers_set',
    'customer_created', 'customer_partner_linked', 'customer_qualifications_set',
    'offer_created', 'subscription_created', 'subscription_status_changed', 'purchase_denied',
    'idempotent_replay_served', 'token_created', 'token_revoked',
    'user_created', 'user_disabled', 'user_enabled', 'user_password_changed'));
