-- benches/macro.sh, data set pg: an application's event log next to pgbench's tables.
-- psql -v events=N: N rows of JSON payloads, the same rows for the same N (setseed), ~330
-- bytes each in a plain dump.
CREATE TABLE events (
  id bigserial PRIMARY KEY,
  created_at timestamptz NOT NULL,
  account_id integer NOT NULL,
  kind text NOT NULL,
  payload jsonb NOT NULL
);

SELECT setseed(0.3141);
INSERT INTO events (created_at, account_id, kind, payload)
SELECT timestamptz '2024-03-01 00:00:00+00' + g * interval '173 milliseconds',
       1 + floor(r.a * 100000)::int,
       (ARRAY['login', 'logout', 'page_view', 'purchase', 'refund', 'signup', 'api_call',
              'password_reset'])[1 + floor(r.k * 8)::int],
       jsonb_strip_nulls(jsonb_build_object(
         'session', md5(r.s::text),
         'ip', format('10.%s.%s.%s', floor(r.i1 * 256)::int, floor(r.i2 * 256)::int,
                      floor(r.i3 * 256)::int),
         'user_agent', (ARRAY['Mozilla/5.0 (X11; Linux x86_64) Firefox/121.0',
                              'Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0',
                              'Mozilla/5.0 (iPhone; CPU iPhone OS 17_2) Safari/604.1',
                              'curl/8.4.0', 'okhttp/4.12.0'])[1 + floor(r.u * 5)::int],
         'path', (ARRAY['/api/v2/orders', '/api/v2/cart', '/checkout', '/search',
                        '/account/settings', '/products'])[1 + floor(r.p * 6)::int]
                 || '/' || floor(r.q * 100000)::int,
         'status', (ARRAY[200, 200, 200, 201, 204, 301, 404, 500])[1 + floor(r.c * 8)::int],
         'duration_ms', round((r.d * r.d * 2000)::numeric, 2),
         'amount', CASE WHEN r.k < 0.5 THEN round((r.m * 500)::numeric, 2) END,
         'currency', CASE WHEN r.k < 0.5 THEN 'EUR' END,
         'tags', jsonb_build_array('region-' || floor(r.t * 12)::int,
                                   CASE WHEN r.t < 0.3 THEN 'mobile' ELSE 'web' END),
         'processed', false))
FROM generate_series(1, :events) AS g,
     LATERAL (SELECT random() AS a, random() AS k, random() AS s, random() AS i1,
                     random() AS i2, random() AS i3, random() AS u, random() AS p,
                     random() AS q, random() AS c, random() AS d, random() AS m,
                     random() AS t, g AS keep) AS r;
ANALYZE events;
