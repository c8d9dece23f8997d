-- benches/macro.sh, data set pg: the application's share of a day's changes, after pgbench's.
-- psql -v events=N (the rows pg-events.sql made): ~0.5 % of the events, picked by a hash of their
-- id (scattered over the table), are marked processed; PostgreSQL writes the new row versions
-- at the end of the table (the pages are full) and leaves the old ones dead in the middle.
-- Then ~0.5 % new events are appended. No VACUUM FULL: the table keeps its order.
SELECT setseed(0.2718);
UPDATE events
   SET payload = payload || jsonb_build_object('processed', true,
                   'processed_at', to_char(created_at + interval '1 day', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                   'worker', 'worker-' || floor(random() * 16)::int)
 WHERE ('x' || substr(md5(id::text), 1, 8))::bit(32)::int % 200 = 0;
INSERT INTO events (created_at, account_id, kind, payload)
SELECT timestamptz '2024-03-02 00:00:00+00' + g * interval '173 milliseconds',
       1 + floor(random() * 100000)::int, 'page_view',
       jsonb_build_object('session', md5(random()::text), 'path', '/products/' || g,
                          'status', 200, 'duration_ms', round((random() * 300)::numeric, 2),
                          'processed', false)
FROM generate_series(1, :events / 200) AS g;
