-- What policy versions added to every purchase, made cheaper (BENCHMARKS.md, "Policy versions");
-- the guarantees are the same.

-- subscriptions.policy_version loses its foreign key. Every purchase's key check took FOR KEY SHARE
-- on the row of the version in force, the one row all purchases share, so concurrent purchases
-- made a MultiXact of it at each insert and dirtied its page. The trigger below refuses any
-- version but the one in force at created_at, and published versions are never updated or deleted
-- (policy_versions_immutable), so the key protected nothing more. (A superuser who disables user
-- triggers now disables this check too; the key would have stayed.)
alter table subscriptions drop constraint subscriptions_policy_version_fkey;

-- The backstop of R1 and R4, as before (it takes the customer's row lock, then POLICY_LOCK shared),
-- with its reads in one statement after both locks instead of four: the version in force at
-- created_at without a call of policy_version_at and without copying the version's document, the
-- offer read only for a special segment, and the GCC history only where the lockout forbids the
-- segment. That statement's fresh READ COMMITTED snapshot sees every subscription and version
-- committed by whoever held the locks before. A writer that names no version gets the one in force;
-- an instant before every version is refused (it had no version to compare with).
create or replace function subscriptions_gcc_lockout() returns trigger language plpgsql as $$
declare
    in_force integer;
    kind_sellable boolean;
    locked_out boolean;
begin
    perform 1 from customers where id = new.customer_id for no key update;
    if tg_op = 'INSERT' and (new.created_at < now() or new.created_at > clock_timestamp()) then
        raise exception 'subscriptions_decided_now: % is not an instant of this transaction', new.created_at
            using errcode = 'check_violation', constraint = 'subscriptions_decided_now';
    end if;
    perform policy_lock_shared();
    select p.version,
           -- (An offer of another segment is left to the foreign key on (offer_id, segment).)
           o.id is null or o.segment || ':' || o.product_kind = any(p.sellable),
           case when new.segment = any(p.gcc_lockout_forbids) then exists (
               select 1 from subscriptions s
               where s.customer_id = new.customer_id and s.segment = 'gcc' and s.id <> new.id)
           else false end
      into in_force, kind_sellable, locked_out
      from (select version, sellable, gcc_lockout_forbids from policy_versions
            where effective_from <= new.created_at
            order by effective_from desc limit 1) p
      left join offers o
        on new.segment <> 'commercial' and o.id = new.offer_id and o.segment = new.segment;
    new.policy_version := coalesce(new.policy_version, in_force);
    if in_force is null or new.policy_version <> in_force then
        raise exception 'subscriptions_policy_version_in_force: decided under policy version % at %, when version % was in force',
            new.policy_version, new.created_at, coalesce(in_force::text, 'none')
            using errcode = 'check_violation', constraint = 'subscriptions_policy_version_in_force';
    end if;
    if not kind_sellable then
        raise exception 'subscriptions_product_kind_sellable: the offer''s product kind is not sold as % under policy version %',
            new.segment, in_force
            using errcode = 'check_violation', constraint = 'subscriptions_product_kind_sellable';
    end if;
    if locked_out then
        raise exception 'gcc_lockout: customer % has a GCC subscription, so it may not get a % subscription',
            new.customer_id, new.segment
            using errcode = 'check_violation', constraint = 'subscriptions_gcc_lockout';
    end if;
    return new;
end;
$$;

-- The audit log's search by policy version keeps an index, a BRIN one: versions only rise with
-- time and events are appended in time order, so each block range holds one or two versions. The
-- B-tree it replaces took an insert on its rightmost page, with WAL, at every purchase. Block
-- ranges are summarised as they fill (autosummarize), not only by the next vacuum.
drop index events_policy_version_idx;
create index events_policy_version_idx on events using brin (((payload ->> 'policy_version')::integer))
    with (autosummarize = on)
    where payload ? 'policy_version';
