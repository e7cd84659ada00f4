-- Issue 14: the rules as data. A policy version is published once, never changes, and is in force
-- from its `effective_from` until the next version's. Version 1 is the rule book, in force since
-- always, so every decision made before this migration is attributed to it.
--
-- The switch-over is exact (README, "Policy versions"): writers that decide under a version take
-- the advisory lock POLICY_LOCK (1346589250, 1) shared, then read the clock and the version in
-- force at that instant in a later statement; publishing takes it exclusively and requires an
-- effective instant no earlier than its own clock. A decision either ends before the publisher
-- reads its clock (so its instant is earlier than the new version's start) or starts after the
-- publisher commits (so it sees the new version).

create table policy_versions (
    version              integer     primary key check (version >= 1),
    -- The operator's document (domain::policy::PolicyDocument), checked by the service.
    document             jsonb       not null check ((document ->> 'version')::integer = version),
    effective_from       timestamptz not null unique,
    reason               text        not null check (length(btrim(reason)) between 1 and 1000),
    published_by         text        not null,
    published_at         timestamptz not null default clock_timestamp(),
    -- Derived from the document by the insert trigger, never written by hand: the SHA-256 of the
    -- document (instances cache checked policies by it) and the rules the triggers below read.
    digest               bytea       not null check (octet_length(digest) = 32),
    valid_sets           jsonb       not null,
    sellable             text[]      not null,
    gcc_lockout_forbids  text[]      not null
);

-- Versions take effect in the order of their numbers, each from an instant no earlier than the
-- publishing transaction (the first, the rule book, from always); the derived columns follow the
-- document. (The exact rule, effective_from >= the clock read under the exclusive lock, is the
-- publisher's: the service reads its clock in a statement after taking the lock.)
create function policy_versions_publish() returns trigger language plpgsql as $$
declare
    latest policy_versions;
begin
    perform pg_advisory_xact_lock(1346589250, 1);
    select * into latest from policy_versions order by version desc limit 1;
    if found then
        if new.version <> latest.version + 1 then
            raise exception 'policy_versions_in_order: version % follows version %', latest.version + 1, latest.version
                using errcode = 'check_violation', constraint = 'policy_versions_in_order';
        end if;
        if new.effective_from <= latest.effective_from or new.effective_from < now() then
            raise exception 'policy_versions_in_order: version % must take effect after version % (%) and not before now',
                new.version, latest.version, latest.effective_from
                using errcode = 'check_violation', constraint = 'policy_versions_in_order';
        end if;
    elsif new.version <> 1 then
        raise exception 'policy_versions_in_order: the first version is 1'
            using errcode = 'check_violation', constraint = 'policy_versions_in_order';
    end if;
    new.digest := sha256(convert_to(new.document::text, 'UTF8'));
    new.valid_sets := (
        select coalesce(jsonb_agg((
            select coalesce(jsonb_agg(q order by q collate "C"), '[]')
            from jsonb_array_elements_text(s -> 'qualifications') q)), '[]')
        from jsonb_array_elements(new.document -> 'qualification_sets') s);
    new.sellable := array(
        select (seg ->> 'segment') || ':' || kind
        from jsonb_array_elements(new.document -> 'special_segments') seg,
             jsonb_array_elements_text(seg -> 'product_kinds') kind);
    new.gcc_lockout_forbids := array(
        select jsonb_array_elements_text(new.document -> 'gcc_lockout_forbids'));
    return new;
end;
$$;

create trigger policy_versions_publish
    before insert on policy_versions
    for each row execute function policy_versions_publish();

create function policy_versions_immutable() returns trigger language plpgsql as $$
begin
    raise exception '% on policy_versions is not allowed: a published version never changes', tg_op
        using errcode = 'insufficient_privilege';
end;
$$;

create trigger policy_versions_immutable
    before update or delete on policy_versions
    for each row execute function policy_versions_immutable();
create trigger policy_versions_no_truncate
    before truncate on policy_versions
    for each statement execute function policy_versions_immutable();

-- The derived columns are left out: NOT NULL is checked after the trigger has set them.
insert into policy_versions (version, document, effective_from, reason, published_by)
values (1, '{
  "version": 1,
  "qualification_sets": [
    { "qualifications": [], "may_buy": ["commercial"] },
    { "qualifications": ["nonprofit"], "may_buy": ["commercial", "nonprofit"] },
    { "qualifications": ["education"], "may_buy": ["commercial", "education"] },
    { "qualifications": ["gcc"], "may_buy": ["gcc"] },
    { "qualifications": ["state_owned_entity"], "may_buy": ["commercial"] },
    { "qualifications": ["education", "state_owned_entity"], "may_buy": ["commercial", "education"] },
    { "qualifications": ["gcc", "state_owned_entity"], "may_buy": ["gcc"] }
  ],
  "special_segments": [
    { "segment": "education", "reseller_qualification_required": true,
      "indirect_reseller_needs_provider": true, "product_kinds": ["license_based"] },
    { "segment": "nonprofit", "reseller_qualification_required": true,
      "indirect_reseller_needs_provider": false, "product_kinds": ["license_based"] },
    { "segment": "gcc", "reseller_qualification_required": true,
      "indirect_reseller_needs_provider": false, "product_kinds": ["license_based"] }
  ],
  "gcc_lockout_forbids": ["commercial", "education", "nonprofit"]
}', '-infinity', 'the rule book (R1-R5)', 'system');

-- The version in force at `at`.
create function policy_version_at(at timestamptz) returns integer language sql stable as $$
    select version from policy_versions where effective_from <= at order by effective_from desc limit 1
$$;

-- R3 under version `v`: whether `qualifications` (canonical: sorted, no repeats) is a valid set.
create function policy_accepts_set(v integer, qualifications text[]) returns boolean language sql stable as $$
    select exists (select 1 from policy_versions p, jsonb_array_elements(p.valid_sets) s
                   where p.version = v and s = to_jsonb(qualifications))
$$;

-- Takes POLICY_LOCK shared, for a writer deciding under the version in force (see the top). The
-- service takes it first in every such transaction, before any row lock, so that a publisher
-- waiting for the lock never sits between two writers of one customer.
create function policy_lock_shared() returns void language sql as $$
    select pg_advisory_xact_lock_shared(1346589250, 1)
$$;

-- R3 on the current set: valid under the version in force when it was decided (`qualified_at`,
-- written with it; a writer that changes the set without it decides now). The instant lies in
-- the writer's own transaction, so no version can be picked by backdating.
alter table customers add column qualified_at timestamptz;
update customers c set qualified_at = coalesce(
    (select max(h.valid_from) from customer_qualification_history h where h.customer_id = c.id),
    c.created_at);
alter table customers alter column qualified_at set not null,
    alter column qualified_at set default clock_timestamp(),
    drop constraint customers_special_qualifications_valid;
alter table customer_qualification_history drop constraint customer_qualification_history_set_valid;
drop function is_valid_qualification_set(text[]);

create function qualification_set_in_force(instant timestamptz, qualifications text[]) returns void
language plpgsql as $$
begin
    if instant < now() or instant > clock_timestamp() then
        raise exception 'qualification_set_decided_now: % is not an instant of this transaction', instant
            using errcode = 'check_violation', constraint = 'qualification_set_decided_now';
    end if;
    perform policy_lock_shared();
    -- A statement of its own: its snapshot sees every version published before the lock.
    if not policy_accepts_set(policy_version_at(instant), qualifications) then
        raise exception 'customers_special_qualifications_valid: % is not a valid qualification set under policy version %',
            qualifications, policy_version_at(instant)
            using errcode = 'check_violation', constraint = 'customers_special_qualifications_valid';
    end if;
end;
$$;

create function customers_qualification_set() returns trigger language plpgsql as $$
begin
    if tg_op = 'UPDATE' then
        if new.special_qualifications = old.special_qualifications and new.qualified_at = old.qualified_at then
            return new;
        end if;
        if new.qualified_at = old.qualified_at then
            new.qualified_at := clock_timestamp();
        end if;
    end if;
    perform qualification_set_in_force(new.qualified_at, new.special_qualifications);
    return new;
end;
$$;

create trigger customers_qualification_set
    before insert or update of special_qualifications, qualified_at on customers
    for each row execute function customers_qualification_set();

create function customer_qualification_history_set() returns trigger language plpgsql as $$
begin
    perform qualification_set_in_force(new.valid_from, new.special_qualifications);
    return new;
end;
$$;

create trigger customer_qualification_history_set
    before insert on customer_qualification_history
    for each row execute function customer_qualification_history_set();

-- R1 on the catalog: an offer of a special segment is created only as a kind the version in force
-- sells. (Offers are never updated; a later version may stop selling a kind, see subscriptions.)
alter table offers drop constraint offers_special_offer_is_license_based;

create function offers_sellable() returns trigger language plpgsql as $$
begin
    if new.segment <> 'commercial' then
        perform policy_lock_shared();
        if not exists (select 1 from policy_versions p
                       where p.version = policy_version_at(clock_timestamp())
                         and new.segment || ':' || new.product_kind = any(p.sellable)) then
            raise exception 'offers_product_kind_sellable: % offers are not sold as % under the policy in force', new.segment, new.product_kind
                using errcode = 'check_violation', constraint = 'offers_product_kind_sellable';
        end if;
    end if;
    return new;
end;
$$;

create trigger offers_sellable
    before insert on offers
    for each row execute function offers_sellable();

-- Subscriptions name the version they were decided under: the one in force at `created_at`, the
-- decision's instant, which the service reads under the customer lock and writes explicitly.
alter table subscriptions add column policy_version integer references policy_versions (version);
update subscriptions set policy_version = 1;
alter table subscriptions alter column policy_version set not null;

-- The backstop of R1 and R4 follows the version too. It first takes the customer's row lock, the
-- lock purchases and qualification changes take, then POLICY_LOCK shared; the checks run in
-- statements of their own, whose fresh READ COMMITTED snapshots see every subscription and version
-- committed by whoever held the locks before. A writer that names no version gets the one in force.
create or replace function subscriptions_gcc_lockout() returns trigger language plpgsql as $$
declare
    policy policy_versions;
begin
    perform 1 from customers where id = new.customer_id for no key update;
    if tg_op = 'INSERT' and (new.created_at < now() or new.created_at > clock_timestamp()) then
        raise exception 'subscriptions_decided_now: % is not an instant of this transaction', new.created_at
            using errcode = 'check_violation', constraint = 'subscriptions_decided_now';
    end if;
    perform policy_lock_shared();
    select * into policy from policy_versions where version = policy_version_at(new.created_at);
    new.policy_version := coalesce(new.policy_version, policy.version);
    if new.policy_version <> policy.version then
        raise exception 'subscriptions_policy_version_in_force: decided under policy version % at %, when version % was in force',
            new.policy_version, new.created_at, policy.version
            using errcode = 'check_violation', constraint = 'subscriptions_policy_version_in_force';
    end if;
    -- (An offer of another segment is left to the foreign key on (offer_id, segment).)
    if exists (
        select 1 from offers o
        where o.id = new.offer_id and o.segment = new.segment and o.segment <> 'commercial'
          and not o.segment || ':' || o.product_kind = any(policy.sellable)
    ) then
        raise exception 'subscriptions_product_kind_sellable: the offer''s product kind is not sold as % under policy version %',
            new.segment, policy.version
            using errcode = 'check_violation', constraint = 'subscriptions_product_kind_sellable';
    end if;
    if new.segment = any(policy.gcc_lockout_forbids) and exists (
        select 1 from subscriptions
        where customer_id = new.customer_id and segment = 'gcc' and id <> new.id
    ) then
        raise exception 'gcc_lockout: customer % has a GCC subscription, so it may not get a % subscription',
            new.customer_id, new.segment
            using errcode = 'check_violation', constraint = 'subscriptions_gcc_lockout';
    end if;
    return new;
end;
$$;

drop trigger subscriptions_gcc_lockout on subscriptions;
create trigger subscriptions_gcc_lockout
    before insert or update of customer_id, segment, offer_id, created_at, policy_version on subscriptions
    for each row execute function subscriptions_gcc_lockout();

-- The audit log can be searched by the version a decision was made under.
create index events_policy_version_idx on events (((payload ->> 'policy_version')::integer))
    where payload ? 'policy_version';

-- Publishing is audited on a chain of its own, the policy chain.
alter table events drop constraint events_chain_id_is_its_subject;
alter table events add constraint events_chain_id_is_its_subject
    check (chain_id = coalesce(customer_id, partner_id, '00000000-0000-0000-0000-000000000000')
           or (event_type = 'policy_published' and customer_id is null and partner_id is null
               and chain_id = '00000000-0000-0000-0000-000000000001'));

alter table events drop constraint events_event_type_check;
alter table events add constraint events_event_type_check check (event_type in (
    'partner_created', 'partner_qualifications_set', 'partner_providers_set',
    'customer_created', 'customer_partner_linked', 'customer_qualifications_set',
    'offer_created', 'subscription_created', 'subscription_status_changed', 'purchase_denied',
    'idempotent_replay_served', 'token_created', 'token_revoked',
    'user_created', 'user_disabled', 'user_enabled', 'user_password_changed',
    'webhook_endpoint_created', 'webhook_endpoint_disabled', 'webhook_secret_rotated',
    'webhook_endpoint_enabled', 'webhook_redelivery_requested', 'policy_published'));
