-- Candidate streets for each query of a batch (`i` = query index): trigram similarity of the
-- normalised key within the query's communes (or nationwide with the trigram index when the
-- query names none), and for each street the addresses numbered around the queried number.
WITH q AS (
    SELECT * FROM unnest(CAST(:keys AS text[]), CAST(:codes AS text[]),
                         CAST(:numbers AS integer[]), CAST(:limits AS integer[]))
           WITH ORDINALITY AS q(street_key, codes, number, lim, i)
)
SELECT q.i, s.id AS street_id, s.street, s.street_key, s.insee_code, s.commune, s.postcode,
       s.old_insee_code, s.old_commune, s.is_locality, s.sim,
       ST_X(s.geom) AS street_lon, ST_Y(s.geom) AS street_lat,
       a.id AS address_id, a.ban_id, a.number, a.suffix, a.postcode AS address_postcode,
       ST_X(a.geom) AS lon, ST_Y(a.geom) AS lat
  FROM q
  CROSS JOIN LATERAL (
        SELECT c.* FROM (
            SELECT s.*, greatest(similarity(s.street_key, q.street_key),
                                 word_similarity(q.street_key, s.street_key) * 0.9) AS sim
              FROM geo_streets s
             WHERE q.codes <> '' AND s.insee_code = ANY(string_to_array(q.codes, '|'))
            UNION ALL
            SELECT s.*, greatest(similarity(s.street_key, q.street_key),
                                 word_similarity(q.street_key, s.street_key) * 0.9) AS sim
              FROM geo_streets s
             WHERE q.codes = '' AND s.street_key % q.street_key
        ) c
         WHERE c.sim >= 0.2
         ORDER BY c.sim DESC, c.id
         LIMIT q.lim
  ) s
  LEFT JOIN LATERAL (
        SELECT a.id, a.ban_id, a.number, a.suffix, a.postcode, a.geom
          FROM geo_addresses a
         WHERE a.street_id = s.id
           AND a.number BETWEEN q.number - 60 AND q.number + 60
         ORDER BY abs(a.number - q.number), a.number, a.suffix NULLS FIRST, a.id
         LIMIT 12) a ON true
 ORDER BY q.i, s.sim DESC, s.id, a.number, a.suffix NULLS FIRST, a.id;
