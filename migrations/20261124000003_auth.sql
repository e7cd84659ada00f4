-- Bearer tokens: each token is a principal acting in one role (partner roles for one partner).
-- Only the SHA-256 of the secret is stored; the secret is shown once, at creation.
create table api_tokens (
    id           uuid        primary key,
    secret_hash  bytea       not null unique check (length(secret_hash) = 32),
    role         text        not null check (role in
        ('global_admin', 'admin_agent', 'sales_agent', 'back_office', 'auditor', 'operator')),
    partner_id   uuid        references partners (id),
    label        text        not null check (length(btrim(label)) between 1 and 200),
    created_by   text        not null,
    created_at   timestamptz not null default clock_timestamp(),
    expires_at   timestamptz not null,
    revoked_at   timestamptz,
    constraint api_tokens_partner_roles_are_bound
        check ((role in ('global_admin', 'admin_agent', 'sales_agent')) = (partner_id is not null)),
    constraint api_tokens_expire_after_creation check (expires_at > created_at)
);
create index api_tokens_partner_idx on api_tokens (partner_id, id);

-- Every event names the principal's role and partner besides its id (`actor`).
alter table events
    add column actor_role       text check (actor_role in
        ('global_admin', 'admin_agent', 'sales_agent', 'back_office', 'auditor', 'operator')),
    add column actor_partner_id uuid references partners (id);

alter table events drop constraint events_event_type_check;
alter table events add constraint events_event_type_check check (event_type in (
    'partner_created', 'partner_qualifications_set', 'partner_providers_set',
    'customer_created', 'customer_partner_linked', 'customer_qualifications_set',
    'offer_created', 'subscription_created', 'purchase_denied',
    'token_created', 'token_revoked'));

-- Idempotency keys belong to whoever sent them (a partner, or a platform principal), so two
-- ordering systems choosing the same key never see each other's outcomes.
alter table idempotency_keys add column owner text not null default 'system';
alter table idempotency_keys drop constraint idempotency_keys_pkey;
alter table idempotency_keys add primary key (owner, key);
