-- The addresses numbered around the queried number on each candidate street of a batch
-- (candidate streets are found in memory, engine._StreetIndex): at most 12 per street, the
-- nearest numbers first.
WITH q AS (
    SELECT * FROM unnest(CAST(:ids AS bigint[]), CAST(:numbers AS integer[]))
           AS q(street_id, qnum)
)
SELECT q.street_id, q.qnum, a.id AS address_id, a.ban_id, a.number, a.suffix,
       a.postcode AS address_postcode, ST_X(a.geom) AS lon, ST_Y(a.geom) AS lat
  FROM q
  CROSS JOIN LATERAL (
        SELECT a.id, a.ban_id, a.number, a.suffix, a.postcode, a.geom
          FROM geo_addresses a
         WHERE a.street_id = q.street_id
           AND a.number BETWEEN q.qnum - 60 AND q.qnum + 60
         ORDER BY abs(a.number - q.qnum), a.number, a.suffix NULLS FIRST, a.id
         LIMIT 12) a
 ORDER BY q.street_id, q.qnum, a.number, a.suffix NULLS FIRST, a.id;
