-- The attempt that delivers a notice is kept in its delivery's row (BENCHMARKS.md, "Webhook
-- delivery", "Fewer writes per notice"). Settling rewrites that row anyway, and never as a HOT
-- update (`state` is in the partial indexes' predicates), so a few more columns cost nothing, where
-- a row of `webhook_attempts` cost a heap insert and an index entry per notice. Attempts that do
-- not deliver stay in `webhook_attempts`, as do all attempts settled before this migration. A
-- delivery delivered again after a redelivery moves its earlier delivering attempt there in the
-- same statement (a redelivery itself leaves these columns as they are), so no attempt is ever
-- dropped: a delivery's attempts are the rows of `webhook_attempts` and this one.
alter table webhook_deliveries
    add column delivered_attempt     integer,
    add column delivered_started_at  timestamptz,
    add column delivered_latency_ms  integer,
    add column delivered_status      integer,
    add column delivered_body_prefix text;
-- Not validated: every existing row has the new columns null, which passes, and checking would
-- read the whole table under this migration's exclusive lock. New and updated rows are checked.
alter table webhook_deliveries add constraint webhook_deliveries_delivering_attempt_check check (
    (delivered_attempt is null) = (delivered_started_at is null)
    and (delivered_attempt is null) = (delivered_latency_ms is null)
    and (delivered_attempt is null) = (delivered_status is null)
    and (delivered_attempt is not null or delivered_body_prefix is null)
    and delivered_attempt >= 1
    and delivered_status between 200 and 299
    and length(delivered_body_prefix) <= 256) not valid;

-- Every attempt of every delivery, wherever it is kept.
create view webhook_attempt_log as
    select chain_id, endpoint_id, chain_seq, attempt, started_at, latency_ms, status, error, body_prefix
    from webhook_attempts
    union all
    select chain_id, endpoint_id, chain_seq, delivered_attempt, delivered_started_at,
           delivered_latency_ms, delivered_status, null, delivered_body_prefix
    from webhook_deliveries
    where delivered_attempt is not null;
