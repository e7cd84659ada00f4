-- A purchase in two round trips instead of eight (issue 15; README, "How it stays correct under
-- concurrency"): the service reads the facts without locks (purchase_facts, policy_in_force),
-- decides with the pure rules, then calls purchase_record, which takes the locks, reads the facts
-- again in a fresh snapshot and writes the decision only if they are the facts it was made on; if
-- not, it answers the fresh facts and writes nothing, and the service decides again. The customer
-- lock is held for one call inside the database, never across a round trip.

-- The version in force at an instant. A set-returning SQL function that is not volatile is inlined
-- into the calling statement, so it costs one index probe, as the probe written out would.
create function policy_in_force(instant timestamptz) returns table (version integer, digest bytea)
language sql stable as $$
    select p.version, p.digest from policy_versions p
    where p.effective_from <= instant
    order by p.effective_from desc limit 1
$$;

-- Everything about a customer and a partner that the rules read, apart from the offer and the
-- policy: no row if either does not exist. Read without locks by read-only decisions and a
-- purchase's first round trip, and again under the locks by purchase_record. Inlined like
-- policy_in_force.
-- Every table is read by the customer's id as a parameter, so on Citus each read is routed to the
-- customer's shard (or a reference table).
create function purchase_facts(p_customer uuid, p_partner uuid) returns table (
    special_qualifications text[], partner_kind text, reseller_qualifications text[],
    related boolean, has_provider boolean, gcc_history boolean)
language sql stable as $$
    select c.special_qualifications, p.kind, p.reseller_qualifications,
           exists(select 1 from customer_partners r
                  where r.customer_id = p_customer and r.partner_id = p_partner),
           exists(select 1 from indirect_reseller_providers i where i.reseller_id = p_partner),
           exists(select 1 from subscriptions s where s.customer_id = p_customer and s.segment = 'gcc')
    from customers c, partners p
    where c.id = p_customer and p.id = p_partner
$$;

-- A purchase's one writing call, a transaction of its own (volatile, as it must be: under READ
-- COMMITTED each of its statements takes a fresh snapshot). In order:
--   1. POLICY_LOCK shared, then the advisory lock on the idempotency key (a hash of customer, owner
--      and key; a collision merely serializes two keys);
--   2. the key, in a new statement: if a racing request with this key committed first, its stored
--      request and outcome are answered ('stored') and nothing is written;
--   3. the customer's row lock (FOR NO KEY UPDATE, the lock every writer of its purchases and
--      qualifications takes) and the partner's (FOR SHARE); 'missing' if either is gone;
--   4. in a new statement, so a fresh READ COMMITTED snapshot that holds everything committed by
--      whoever held these locks before: the facts, the clock and the version in force at it;
--   5. if the facts or the version differ from those the service decided on: 'stale', with the
--      fresh ones, and nothing is written;
--   6. otherwise the subscription (unless the decision was a denial), the event and the key's row,
--      stamped with the instant of step 4: the subscription's created_at, the event payload's
--      decided_at and the stored outcome's subscription.created_at ('recorded');
--   7. last, if the request's deadline has passed (p_budget after the call began; the service has
--      answered or is about to answer 503 request_timeout, "nothing was changed"): an error,
--      query_canceled, as when statement_timeout cancels, which undoes step 6. Only the commit
--      comes after this check.
-- Every column is qualified, and without a #variable_conflict directive an ambiguous name is an
-- error, never silently a column or a variable.
-- The qualification sets are compared as sets: the service sends back what it decoded.
create function purchase_record(
    p_customer uuid, p_partner uuid, p_owner text, p_key text,
    -- The facts and the version the decision was made on.
    p_special_qualifications text[], p_partner_kind text, p_reseller_qualifications text[],
    p_related boolean, p_has_provider boolean, p_gcc_history boolean, p_policy_version integer,
    -- What the decision writes: a subscription (p_subscription_id null for a denial), the event,
    -- the key's row.
    p_subscription_id uuid, p_offer_id uuid, p_segment text, p_quantity integer, p_status text,
    p_actor text, p_actor_role text, p_actor_partner_id uuid, p_request_id text,
    p_event_type text, p_payload jsonb, p_request jsonb, p_outcome jsonb,
    -- The time left until the request's deadline, when it was sent; null: none.
    p_budget interval,
    out result text, out decided_at timestamptz,
    out stored_request jsonb, out stored_outcome jsonb,
    out special_qualifications text[], out partner_kind text, out reseller_qualifications text[],
    out related boolean, out has_provider boolean, out gcc_history boolean,
    out policy_version integer, out policy_digest bytea)
language plpgsql volatile as $$
declare
    stamp jsonb;
begin
    perform policy_lock_shared(),
            pg_advisory_xact_lock(1346589249, hashtext(p_customer::text || ' ' || p_owner || ' ' || p_key));
    select k.request, k.outcome into stored_request, stored_outcome
      from idempotency_keys k
     where k.customer_id = p_customer and k.owner = p_owner and k.key = p_key;
    if found then
        result := 'stored';
        return;
    end if;
    perform 1 from customers c, partners p where c.id = p_customer and p.id = p_partner
        for no key update of c for share of p;
    if not found then
        result := 'missing';
        return;
    end if;
    select t.at, v.version, v.digest, f.special_qualifications, f.partner_kind,
           f.reseller_qualifications, f.related, f.has_provider, f.gcc_history
      into decided_at, policy_version, policy_digest, special_qualifications, partner_kind,
           reseller_qualifications, related, has_provider, gcc_history
      from (select clock_timestamp() as at) t
      cross join lateral policy_in_force(t.at) v
      cross join purchase_facts(p_customer, p_partner) f;
    if not found then
        -- Both rows are locked and customers are never deleted: a version must be missing.
        raise exception 'purchase_record: no facts or no policy version in force at %', clock_timestamp();
    end if;
    if (special_qualifications @> p_special_qualifications
            and special_qualifications <@ p_special_qualifications
            and partner_kind = p_partner_kind
            and reseller_qualifications @> p_reseller_qualifications
            and reseller_qualifications <@ p_reseller_qualifications
            and related = p_related and has_provider = p_has_provider
            and gcc_history = p_gcc_history and policy_version = p_policy_version) is not true then
        result := 'stale';
        return;
    end if;
    -- The instant as the service writes it in JSON (RFC 3339, UTC).
    stamp := to_jsonb(to_char(decided_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'));
    if p_subscription_id is not null then
        insert into subscriptions (id, customer_id, partner_id, offer_id, segment, quantity, status,
                                   created_at, policy_version)
        values (p_subscription_id, p_customer, p_partner, p_offer_id, p_segment, p_quantity, p_status,
                decided_at, policy_version);
        p_outcome := jsonb_set(p_outcome, '{subscription,created_at}', stamp);
    end if;
    insert into events (chain_id, actor, actor_role, actor_partner_id, request_id, customer_id,
                        partner_id, event_type, payload)
    values (p_customer, p_actor, p_actor_role, p_actor_partner_id, p_request_id, p_customer,
            p_partner, p_event_type, p_payload || jsonb_build_object('decided_at', stamp));
    insert into idempotency_keys (owner, key, customer_id, request, outcome, subscription_id)
    values (p_owner, p_key, p_customer, p_request, p_outcome, p_subscription_id);
    if clock_timestamp() > statement_timestamp() + p_budget then
        raise exception 'purchase_record: past the request''s deadline (% after the call began)', p_budget
            using errcode = 'query_canceled';
    end if;
    result := 'recorded';
end;
$$;
