-- pgbench: eligible.sql's reads in one round trip (scripts/bench/one_trip.sql).
\set c random(1, :customers)
\set p :c % :partners + 1
\set m :c % 20
select * from bench_eligible(:c, :p, :m);
