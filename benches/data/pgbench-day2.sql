-- benches/macro.sh, data set pg: pgbench's built-in "tpcb-like" transaction, except that the
-- history row's mtime is computed from the run's random numbers instead of CURRENT_TIMESTAMP,
-- so that `pgbench -c 1 -j 1 --random-seed=N` writes the same rows on every run.
\set aid random(1, 100000 * :scale)
\set bid random(1, 1 * :scale)
\set tid random(1, 10 * :scale)
\set delta random(-5000, 5000)
\set ms random(0, 86399999)
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid;
UPDATE pgbench_branches SET bbalance = bbalance + :delta WHERE bid = :bid;
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime)
  VALUES (:tid, :bid, :aid, :delta, TIMESTAMP '2024-03-02 00:00:00' + :ms * INTERVAL '1 millisecond');
END;
