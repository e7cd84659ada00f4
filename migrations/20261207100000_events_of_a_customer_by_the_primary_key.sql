-- no-transaction
-- A customer's events are its chain: `events_chain_id_is_its_subject` holds an event with a
-- customer to that customer's chain. So the primary key (chain_id, id) serves one customer's
-- newest events as `events_customer_idx` (customer_id, id) did, once the audit search names the
-- chain with the customer (this release). One index entry fewer per event, on every purchase.
-- Concurrently, outside a transaction: a plain drop would queue every event insert behind any
-- long export reading `events`. An instance of an earlier release still running reads a
-- customer's events without the chain, by a sequential scan, until it is replaced.
drop index concurrently if exists events_customer_idx;
