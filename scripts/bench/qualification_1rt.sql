-- pgbench: qualification.sql's transaction in one round trip (scripts/bench/one_trip.sql).
\set c random(1, :customers)
select bench_set_qualifications(:c);
