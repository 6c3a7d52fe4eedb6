-- Communes matching each query of a batch (one row per query and commune; `i` = query index):
-- postcode, exact or fuzzy commune name, trailing words, INSEE codes, one indexed branch each.
-- Also returns the codes their streets are stored under (own, current, arrondissements).
WITH q AS (
    SELECT * FROM unnest(CAST(:postcodes AS text[]), CAST(:cities AS text[]),
                         CAST(:tails AS text[]), CAST(:citycodes AS text[]))
           WITH ORDINALITY AS q(postcode, city_key, tails, citycodes, i)
)
SELECT q.i, g.code, g.kind, g.name, g.name_key, g.current_code, g.departement_code,
       g.postcodes, g.population,
       (SELECT c.name FROM geo_communes c
         WHERE c.code = g.current_code AND c.kind IN ('commune', 'arrondissement')
         ORDER BY c.kind LIMIT 1) AS current_name,
       ST_X(g.geom) AS lon, ST_Y(g.geom) AS lat,
       CASE WHEN q.city_key = '' THEN 0 ELSE similarity(g.name_key, q.city_key) END AS city_sim,
       (q.postcode <> '' AND q.postcode = ANY(g.postcodes)) AS pc_match,
       array_append(ARRAY(SELECT c.code FROM geo_communes c
                           WHERE c.parent_code = g.current_code AND c.kind = 'arrondissement'
                           ORDER BY c.code),
                    g.current_code) || CASE WHEN g.code <> g.current_code THEN ARRAY[g.code]
                                             ELSE ARRAY[]::varchar[] END AS street_codes
  FROM q
  CROSS JOIN LATERAL (
        SELECT code, kind, name_key FROM geo_communes
         WHERE q.postcode <> '' AND postcodes @> ARRAY[q.postcode]
        UNION
        SELECT code, kind, name_key FROM geo_communes
         WHERE q.city_key <> '' AND name_key = q.city_key
        UNION
        -- Fuzzy names only when no commune bears exactly this name (trigram scans cost more).
        SELECT code, kind, name_key FROM geo_communes
         WHERE q.city_key <> '' AND name_key % q.city_key
           AND NOT EXISTS (SELECT 1 FROM geo_communes e WHERE e.name_key = q.city_key)
        UNION
        SELECT code, kind, name_key FROM geo_communes
         WHERE q.tails <> '' AND name_key = ANY(string_to_array(q.tails, '|'))
        UNION
        SELECT code, kind, name_key FROM geo_communes
         WHERE q.citycodes <> ''
           AND (code = ANY(string_to_array(q.citycodes, '|'))
                OR current_code = ANY(string_to_array(q.citycodes, '|')))
  ) h
  JOIN geo_communes g ON g.code = h.code AND g.kind = h.kind AND g.name_key = h.name_key
 ORDER BY q.i, g.code, g.kind, g.name_key;
