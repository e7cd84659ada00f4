-- Defense in depth for R4: the database itself refuses a non-GCC subscription for a customer whose
-- history holds a GCC subscription, even from a writer that bypasses the service. The service's own
-- check stays (it gives the explainable denial); this trigger is the backstop.
--
-- It first takes the customer's row lock, the lock the service's purchases and qualification
-- changes take, so concurrent writers of one customer queue; the check then runs in a statement of
-- its own, whose fresh READ COMMITTED snapshot sees every subscription committed by whoever held the
-- lock before. (Writers in REPEATABLE READ or SERIALIZABLE read an older snapshot; the service uses
-- READ COMMITTED.)
create function subscriptions_gcc_lockout() returns trigger language plpgsql as $$
begin
    perform 1 from customers where id = new.customer_id for no key update;
    if new.segment <> 'gcc' and exists (
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

create trigger subscriptions_gcc_lockout
    before insert or update of customer_id, segment on subscriptions
    for each row execute function subscriptions_gcc_lockout();
