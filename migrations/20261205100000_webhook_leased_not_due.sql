-- A leased delivery is not due until its lease ends (BENCHMARKS.md, "Webhook delivery", "Handed
-- over"): the lease moves `next_attempt_at` to the lease's end, as the dispatcher does for the
-- deliveries it queues leased. The lease walks `webhook_deliveries_due_idx` in `next_attempt_at`
-- order and skipped leased rows one heap fetch each: with the dispatcher's handover, nearly every
-- pending delivery is one in flight, so each lease read them all (31 buffers per purchase, more
-- than queueing them) to find a few. Now they lie past `now()`, where the walk never goes. Should
-- the attempt be lost (the instance died), the delivery is due when its lease runs out, as before;
-- settling it sets its next attempt as before. Otherwise the same function as in 20261204100000.
create or replace function webhook_lease(p_owner uuid, p_lease_secs double precision, p_limit bigint)
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
        next_attempt_at = now() + make_interval(secs => p_lease_secs),
        attempts = d.attempts + 1
    from due, webhook_endpoints ep
    where d.chain_id = due.chain_id and d.endpoint_id = due.endpoint_id
      and d.chain_seq = due.chain_seq and ep.id = d.endpoint_id
    returning d.chain_id, d.endpoint_id, d.chain_seq, d.event_id, d.body, d.attempts, d.retry_base,
              ep.url, ep.secret,
              case when ep.previous_secret_until > now() then ep.previous_secret end
$$;
