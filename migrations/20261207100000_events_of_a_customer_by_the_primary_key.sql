-- A customer's events are its chain: `events_chain_id_is_its_subject` holds an event with a
-- customer to that customer's chain. So the primary key (chain_id, id) serves one customer's
-- newest events as `events_customer_idx` (customer_id, id) did, and the audit search names the
-- chain with the customer. One index entry fewer per event, on every purchase; on Citus, one
-- customer's search now goes to its shard alone.
drop index events_customer_idx;
