-- Every purchase calls these (the lock in the idempotency statement, the version in force in the
-- GCC-history statement and in the subscriptions trigger). As SQL functions they read a table, so
-- PostgreSQL cannot inline them and plans their query again at every call; in PL/pgSQL the plan is
-- kept for the session. Same arguments, same results, same volatility (a stable function still
-- reads with its caller's snapshot).
create or replace function policy_version_at(at timestamptz) returns integer language plpgsql stable as $$
begin
    return (select version from policy_versions where effective_from <= at
            order by effective_from desc limit 1);
end;
$$;

create or replace function policy_accepts_set(v integer, qualifications text[]) returns boolean
    language plpgsql stable as $$
begin
    return exists (select 1 from policy_versions p, jsonb_array_elements(p.valid_sets) s
                   where p.version = v and s = to_jsonb(qualifications));
end;
$$;

create or replace function policy_lock_shared() returns void language plpgsql as $$
begin
    perform pg_advisory_xact_lock_shared(1346589250, 1);
end;
$$;
