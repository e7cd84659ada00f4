-- Back-office history: every qualification set a customer, and every profile (reseller
-- qualifications + provider links) a partner ever had, with evidence, reason and actor.
--
-- History rows are append-only snapshots, one per version. A row is in force from its
-- `valid_from` until the next version's `valid_from` (`valid_to` is derived, never stored, so no
-- row is ever updated). The current state stays on `customers` / `partners` for the purchase path.

alter table partners add column version bigint not null default 1 check (version >= 1);

create table customer_qualification_history (
    id                      uuid        primary key,
    customer_id             uuid        not null references customers (id),
    version                 bigint      not null check (version >= 1),
    special_qualifications  text[]      not null
        constraint customer_qualification_history_set_valid
            check (is_valid_qualification_set(special_qualifications)),
    -- qualification -> evidence reference, for every qualification of the set.
    evidence                jsonb       not null default '{}' check (jsonb_typeof(evidence) = 'object'),
    reason                  text        not null check (length(btrim(reason)) between 1 and 1000),
    actor                   text        not null,
    request_id              text,
    -- clock_timestamp() under the customer lock, like subscriptions.created_at, so history and
    -- purchases of one customer are ordered as they were decided.
    valid_from              timestamptz not null default clock_timestamp(),
    unique (customer_id, version)
);
create index customer_qualification_history_as_of_idx
    on customer_qualification_history (customer_id, valid_from);

create table partner_profile_history (
    id                       uuid        primary key,
    partner_id               uuid        not null references partners (id),
    version                  bigint      not null check (version >= 1),
    reseller_qualifications  text[]      not null
        check (reseller_qualifications <@ array['education', 'gcc', 'nonprofit']::text[]),
    indirect_providers       uuid[]      not null default '{}',
    evidence                 jsonb       not null default '{}' check (jsonb_typeof(evidence) = 'object'),
    reason                   text        not null check (length(btrim(reason)) between 1 and 1000),
    actor                    text        not null,
    request_id               text,
    valid_from               timestamptz not null default clock_timestamp(),
    unique (partner_id, version)
);
create index partner_profile_history_as_of_idx on partner_profile_history (partner_id, valid_from);

-- Existing rows become version 1 of their history, in force since creation.
insert into customer_qualification_history
    (id, customer_id, version, special_qualifications, reason, actor, valid_from)
select gen_random_uuid(), id, version, special_qualifications, 'state before history was kept', 'system', created_at
from customers;

insert into partner_profile_history
    (id, partner_id, version, reseller_qualifications, indirect_providers, reason, actor, valid_from)
select gen_random_uuid(), p.id, p.version, p.reseller_qualifications,
       array(select l.provider_id from indirect_reseller_providers l where l.reseller_id = p.id order by 1),
       'state before history was kept', 'system', p.created_at
from partners p;

create trigger customer_qualification_history_append_only
    before update or delete on customer_qualification_history
    for each row execute function reject_history_rewrite();
create trigger customer_qualification_history_no_truncate
    before truncate on customer_qualification_history
    for each statement execute function reject_history_rewrite();
create trigger partner_profile_history_append_only
    before update or delete on partner_profile_history
    for each row execute function reject_history_rewrite();
create trigger partner_profile_history_no_truncate
    before truncate on partner_profile_history
    for each statement execute function reject_history_rewrite();
