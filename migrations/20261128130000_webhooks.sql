-- Webhooks and the partner change feed, derived from the committed event log (the outbox).
--
-- The dispatcher reads each chain's events past its mark (`webhook_chain_marks`) in `chain_seq`
-- order. A chain's head is row-locked from an event's insert to its commit, so a chain's events
-- commit in `chain_seq` order and any snapshot sees a gapless prefix of each chain: an event that
-- commits late is simply not yet past the mark, never skipped.

-- Where webhooks go: a partner's (its global admin's) or, without partner, the platform's.
create table webhook_endpoints (
    id                       uuid primary key,
    partner_id               uuid references partners (id),
    url                      text        not null check (length(url) between 1 and 2000),
    -- Webhook event types wanted; empty means every type.
    event_types              text[]      not null default '{}',
    description              text        not null default '' check (length(description) <= 200),
    -- The signing key (base64 of 32 random bytes): kept, not hashed, because signing needs it.
    secret                   text        not null,
    -- The key before the last rotation, still signed with until it expires.
    previous_secret          text,
    previous_secret_until    timestamptz,
    created_at               timestamptz not null default clock_timestamp(),
    created_by               text        not null,
    disabled_at              timestamptz,
    disabled_reason          text,
    check ((disabled_at is null) = (disabled_reason is null))
);
create index webhook_endpoints_partner_idx on webhook_endpoints (partner_id, id);

-- How far each chain has been turned into deliveries and feed entries (its last chain_seq done).
create table webhook_chain_marks (
    chain_id  uuid   primary key,
    seq       bigint not null check (seq >= 0)
);
-- Events before this migration are history, not news: every existing chain starts at its head.
insert into webhook_chain_marks (chain_id, seq) select chain_id, seq from event_chain_heads;

-- One event to one endpoint. Keyed by the chain position, so an event is queued once per endpoint
-- whoever dispatches it; the event id is the stable `webhook-id`.
create table webhook_deliveries (
    chain_id         uuid        not null,
    endpoint_id      uuid        not null references webhook_endpoints (id),
    chain_seq        bigint      not null,
    event_id         uuid        not null,
    event_type       text        not null,
    -- The exact body sent (its text is fixed at dispatch, so every retry signs the same bytes).
    body             text        not null,
    state            text        not null default 'pending'
                                 check (state in ('pending', 'delivered', 'failed')),
    attempts         integer     not null default 0,
    next_attempt_at  timestamptz not null default clock_timestamp(),
    -- Who is sending it now, and until when; an expired lease is anyone's.
    lease_owner      uuid,
    lease_until      timestamptz,
    created_at       timestamptz not null default clock_timestamp(),
    delivered_at     timestamptz,
    primary key (chain_id, endpoint_id, chain_seq)
);
create index webhook_deliveries_due_idx on webhook_deliveries (next_attempt_at) where state = 'pending';
create index webhook_deliveries_endpoint_idx on webhook_deliveries (endpoint_id, created_at);

-- Every attempt, with at most a small prefix of the response body.
create table webhook_attempts (
    chain_id      uuid        not null,
    endpoint_id   uuid        not null,
    chain_seq     bigint      not null,
    attempt       integer     not null,
    started_at    timestamptz not null,
    latency_ms    integer     not null,
    status        integer,
    error         text,
    body_prefix   text        check (length(body_prefix) <= 256),
    primary key (chain_id, endpoint_id, chain_seq, attempt)
);

-- The pull feed: per audience (a partner, or the nil id for the platform) a gapless sequence,
-- assigned under the audience head's row lock, so it commits in order and a cursor never skips.
create table partner_feed_heads (
    partner_id  uuid   primary key,
    seq         bigint not null
);
create table partner_feed (
    partner_id   uuid        not null,
    seq          bigint      not null,
    event_id     uuid        not null,
    event_type   text        not null,
    occurred_at  timestamptz not null,
    data         jsonb       not null,
    primary key (partner_id, seq)
);

-- Registering, disabling an endpoint and rotating its secret are audited like every change.
alter table events drop constraint events_event_type_check;
alter table events add constraint events_event_type_check check (event_type in (
    'partner_created', 'partner_qualifications_set', 'partner_providers_set',
    'customer_created', 'customer_partner_linked', 'customer_qualifications_set',
    'offer_created', 'subscription_created', 'subscription_status_changed', 'purchase_denied',
    'idempotent_replay_served', 'token_created', 'token_revoked',
    'user_created', 'user_disabled', 'user_enabled', 'user_password_changed',
    'webhook_endpoint_created', 'webhook_endpoint_disabled', 'webhook_secret_rotated'));
