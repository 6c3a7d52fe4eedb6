-- Candidate streets for each query of a batch (`i` = query index), found from the query's
-- words wherever they stand: the streets of the communes the query names, scored by how well
-- their key matches some stretch of the query text (word_similarity), plus, nationwide, the
-- streets holding one of the query's rarest words (trigram index) — so a street is found
-- even when the commune is misspelt, renamed or missing. For each street, the addresses
-- numbered around the queried number.
WITH q AS (
    SELECT * FROM unnest(CAST(:texts AS text[]), CAST(:codes AS text[]),
                         CAST(:words AS text[]), CAST(:numbers AS integer[]),
                         CAST(:limits AS integer[]))
           WITH ORDINALITY AS q(txt, codes, words, number, lim, i)
)
SELECT q.i, s.id AS street_id, s.street, s.street_key, s.insee_code, s.commune, s.postcode,
       s.old_insee_code, s.old_commune, s.is_locality, s.sim, s.addresses,
       ST_X(s.geom) AS street_lon, ST_Y(s.geom) AS street_lat,
       a.id AS address_id, a.ban_id, a.number, a.suffix, a.postcode AS address_postcode,
       ST_X(a.geom) AS lon, ST_Y(a.geom) AS lat
  FROM q
  CROSS JOIN LATERAL (
        (SELECT s.*, word_similarity(s.street_key, q.txt) AS sim FROM geo_streets s
          WHERE q.codes <> '' AND s.insee_code = ANY(string_to_array(q.codes, '|'))
            AND word_similarity(s.street_key, q.txt) >= 0.3
          ORDER BY sim DESC, s.id
          LIMIT q.lim)
        UNION
        (SELECT c.*, word_similarity(c.street_key, q.txt) AS sim FROM (
            SELECT s.* FROM geo_streets s
             WHERE s.street_key %> split_part(q.words, '|', 1)
            UNION
            SELECT s.* FROM geo_streets s
             WHERE split_part(q.words, '|', 2) <> ''
               AND s.street_key %> split_part(q.words, '|', 2)
            UNION
            SELECT s.* FROM geo_streets s
             WHERE split_part(q.words, '|', 3) <> ''
               AND s.street_key %> split_part(q.words, '|', 3)
         ) c
         WHERE word_similarity(c.street_key, q.txt) >= 0.3
         ORDER BY sim DESC, c.id
         LIMIT q.lim * 2)
  ) s
  LEFT JOIN LATERAL (
        SELECT a.id, a.ban_id, a.number, a.suffix, a.postcode, a.geom
          FROM geo_addresses a
         WHERE a.street_id = s.id
           AND a.number BETWEEN q.number - 60 AND q.number + 60
         ORDER BY abs(a.number - q.number), a.number, a.suffix NULLS FIRST, a.id
         LIMIT 12) a ON true
 ORDER BY q.i, s.sim DESC, s.id, a.number, a.suffix NULLS FIRST, a.id;
