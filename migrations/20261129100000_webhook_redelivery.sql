-- Webhooks: re-enabling an endpoint, and redelivering one event or a range of them.

-- A redelivery starts the retry schedule over without renumbering attempts (their log keeps
-- every one): the schedule counts the attempts after `retry_base`.
alter table webhook_deliveries
    add column retry_base integer not null default 0,
    add constraint webhook_deliveries_retry_base_check check (retry_base between 0 and attempts);

-- A feed entry names its event's place in the chain, so a redelivery can queue notices that were
-- never queued for an endpoint (it was disabled, or registered later) under the same key as
-- dispatch does, `(chain_id, endpoint_id, chain_seq)`.
alter table partner_feed add column chain_id uuid, add column chain_seq bigint;
update partner_feed f set chain_id = e.chain_id, chain_seq = e.chain_seq
from events e where e.id = f.event_id;
alter table partner_feed alter column chain_id set not null, alter column chain_seq set not null;
-- Redelivery finds an audience's notices by event or by when they happened.
create index partner_feed_event_idx on partner_feed (partner_id, event_id);
create index partner_feed_occurred_idx on partner_feed (partner_id, occurred_at);

alter table events drop constraint events_event_type_check;
alter table events add constraint events_event_type_check check (event_type in (
    'partner_created', 'partner_qualifications_set', 'partner_providers_set',
    'customer_created', 'customer_partner_linked', 'customer_qualifications_set',
    'offer_created', 'subscription_created', 'subscription_status_changed', 'purchase_denied',
    'idempotent_replay_served', 'token_created', 'token_revoked',
    'user_created', 'user_disabled', 'user_enabled', 'user_password_changed',
    'webhook_endpoint_created', 'webhook_endpoint_disabled', 'webhook_secret_rotated',
    'webhook_endpoint_enabled', 'webhook_redelivery_requested'));
