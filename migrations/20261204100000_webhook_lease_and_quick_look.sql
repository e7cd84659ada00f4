-- Webhook delivery's two polls made cheap (BENCHMARKS.md, "Webhook delivery", "The lease in due
-- order"): the sender's lease walks the due deliveries in `next_attempt_at` order and stops at the
-- batch, and the dispatcher's quick look names the id it reads from.
--
-- The same statement as a plain query was planned, under load, as a bitmap scan of
-- `webhook_deliveries_due_idx` per endpoint, AND-ed with `webhook_deliveries_endpoint_idx`, then a
-- sort of every due delivery: O(pending due + the index's dead entries), 80-180 ms per lease with
-- 2,000 pending. The statistics of a queue table are always stale (the planner expected 2 rows),
-- and a bitmap scan never marks the entries of settled deliveries dead, so every lease read them
-- all again. An index scan in due order stops after the batch and marks dead entries as it passes
-- them, so the next lease skips them: 3 ms for the same queue. The function's settings price every
-- other plan out (they remain only as a fallback, should that index be missing); the endpoint's
-- check is a scalar subquery so that no join is planned around the scan. Nothing else changed:
-- due, not leased (or the lease ran out), to an enabled endpoint, and no earlier pending delivery
-- of its chain to its endpoint (per customer in order), rows other instances are leasing skipped.
create function webhook_lease(p_owner uuid, p_lease_secs double precision, p_limit bigint)
    returns table (chain_id uuid, endpoint_id uuid, chain_seq bigint, event_id uuid, body text,
                   attempts integer, retry_base integer, url text, secret text,
                   previous_secret text)
    language sql volatile
    set enable_bitmapscan = off
    set enable_sort = off
as $$
    with due as (
        select d.chain_id, d.endpoint_id, d.chain_seq -- fan-out: webhook dispatch
        from webhook_deliveries d
        where d.state = 'pending' and d.next_attempt_at <= now()
          and (d.lease_until is null or d.lease_until < now())
          and (select ep.disabled_at is null from webhook_endpoints ep where ep.id = d.endpoint_id)
          and not exists (
              select 1 from webhook_deliveries p
              where p.chain_id = d.chain_id and p.endpoint_id = d.endpoint_id
                and p.chain_seq < d.chain_seq and p.state = 'pending')
        order by d.next_attempt_at
        limit p_limit
        for update of d skip locked
    )
    update webhook_deliveries d
    set lease_owner = p_owner, lease_until = now() + make_interval(secs => p_lease_secs),
        attempts = d.attempts + 1
    from due, webhook_endpoints ep
    where d.chain_id = due.chain_id and d.endpoint_id = due.endpoint_id
      and d.chain_seq = due.chain_seq and ep.id = d.endpoint_id
    returning d.chain_id, d.endpoint_id, d.chain_seq, d.event_id, d.body, d.attempts, d.retry_base,
              ep.url, ep.secret,
              case when ep.previous_secret_until > now() then ep.previous_secret end
$$;

-- The smallest event id of the instant `t` (its UUIDv7 prefix, then zeros): every event written
-- at or after `t` has a greater id. The dispatcher's quick look reads the events after one.
create function event_id_floor(t timestamptz) returns uuid
    language sql stable parallel safe
    return encode(event_id_prefix(t) || '\x0000000000000000'::bytea, 'hex')::uuid;
