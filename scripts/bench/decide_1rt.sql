-- pgbench: decide.sql's reads in one round trip (scripts/bench/one_trip.sql).
\set c random(1, :customers)
\set p :c % :partners + 1
\set m :c % 20
\set o case when :m < 8 or :m = 16 then 1 when :m < 11 or :m = 17 then 2 when :m < 14 then 3 else 4 end
select * from bench_decide(:c, :p, :o);
