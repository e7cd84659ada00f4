-- Room on each page of webhook_deliveries for the lease's update (BENCHMARKS.md, "Webhook
-- delivery", "Fewer writes per notice"). The lease changes no indexed column, so its update could be
-- HOT, but a HOT update must find room on the row's own page, and pages filled by inserts had
-- none: under load most leases wrote a new row version elsewhere and an entry in each of the four
-- indexes, about 7 WAL records per leased delivery. With half of each page left to updates the
-- lease writes 2 (its lock and a HOT update). The cost is disk: a delivery's page holds half as many
-- rows. Only pages written from now on are affected.
alter table webhook_deliveries set (fillfactor = 50);
