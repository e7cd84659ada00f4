-- A delivery is due only when no earlier delivery of its chain to its endpoint is pending, and the
-- lease asks that of every due delivery. Over the primary key the question walked the chain's
-- delivered rows before reaching a pending one: O(delivered) per due row, so a backlog on a few
-- busy customers made each lease round take hundreds of milliseconds while it sent one delivery per
-- customer (the webhook crash test: 3,000 pending, 0.2 s rounds of 4). Over pending rows only, it
-- is one index probe.
create index webhook_deliveries_pending_idx on webhook_deliveries (chain_id, endpoint_id, chain_seq)
    where state = 'pending';
