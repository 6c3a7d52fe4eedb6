-- Candidate pairs of the whole registry (or only those touching the given ids), every block
-- a set-based join: the name-and-place pairs computed in numpy (carteco/duplicate_blocks.py,
-- passed as two arrays of ids), then equality joins PostgreSQL runs as
-- (parallel) hash joins. Continued by duplicates_features.sql (the `pairs` CTE it reads).
WITH grid AS (
    SELECT * FROM unnest(CAST(:grid_a AS bigint[]), CAST(:grid_b AS bigint[])) AS g(x, y)
),
-- Website hosts and phone numbers held by a few structures of one commune (a network's
-- shared site or switchboard, held by many, says nothing; nor two homonyms' sites apart).
hosts AS MATERIALIZED (
    SELECT id, place, host FROM (
        SELECT id, place, host, count(*) OVER (PARTITION BY place, host) AS n
          FROM (
                -- The host as website_host() reads it, by string functions computed once
                -- per row (OFFSET 0: not inlined; a regular expression costs twice as much).
                SELECT id, coalesce(insee_code, commune_code) AS place,
                       CASE WHEN left(h, 4) = 'www.' THEN substr(h, 5) ELSE h END AS host
                  FROM (SELECT id, insee_code, commune_code,
                               split_part(split_part(split_part(split_part(
                                   CASE WHEN strpos(u, '://') > 0 THEN split_part(u, '://', 2)
                                        ELSE u END,
                                   '/', 1), '?', 1), '#', 1), ':', 1) AS h
                          FROM (SELECT id, insee_code, commune_code, lower(btrim(website)) AS u
                                  FROM structures
                                 WHERE website IS NOT NULL AND status <> 'hidden' OFFSET 0) s
                        OFFSET 0) t
                OFFSET 0) w
         WHERE host <> '' AND host <> ALL (CAST(:shared_hosts AS text[]))
    ) h WHERE n BETWEEN 2 AND :max_group
),
phones AS MATERIALIZED (
    SELECT id, place, phone FROM (
        SELECT id, place, phone, count(*) OVER (PARTITION BY place, phone) AS n
          FROM (SELECT DISTINCT s.id, coalesce(s.insee_code, s.commune_code) AS place,
                       right(regexp_replace(p.v, '\D', '', 'g'), 9) AS phone
                  FROM structures s
                 CROSS JOIN LATERAL (VALUES (s.extra->>'phone'), (s.extra->>'telephone'),
                                            (s.extra->>'téléphone'), (s.extra->>'tel'),
                                            (s.extra->>'telephone_fixe')) AS p(v)
                 WHERE s.extra ?| CAST(:phone_keys AS text[]) AND s.status <> 'hidden'
                   AND p.v IS NOT NULL) q
         WHERE length(phone) = 9
    ) h WHERE n BETWEEN 2 AND :max_group
),
raw AS (
    SELECT x, y FROM grid
    UNION ALL
    -- The same name in the same commune, at any distance (one source may place a structure
    -- at its commune's centre).
    SELECT a.id, b.id
      FROM structures a JOIN structures b
        ON b.name_key = a.name_key
       AND coalesce(b.insee_code, b.commune_code) = coalesce(a.insee_code, a.commune_code)
     WHERE b.id > a.id AND a.status <> 'hidden' AND b.status <> 'hidden'
    UNION ALL
    -- No point: a close name (trigram index) in the same commune or postcode.
    SELECT a.id, b.id
      FROM structures a JOIN structures b ON b.name_key % a.name_key
     WHERE a.geom_l93 IS NULL AND b.id <> a.id AND a.status <> 'hidden'
       AND b.status <> 'hidden'
       AND (b.postcode = a.postcode
            OR coalesce(b.insee_code, b.commune_code) = coalesce(a.insee_code, a.commune_code))
    UNION ALL
    SELECT a.id, b.id FROM structures a JOIN structures b ON b.siret = a.siret
     WHERE a.siret IS NOT NULL AND b.id > a.id AND a.status <> 'hidden'
       AND b.status <> 'hidden'
    UNION ALL
    SELECT a.id, b.id FROM structures a JOIN structures b ON b.rna = a.rna
     WHERE a.rna IS NOT NULL AND b.id > a.id AND a.status <> 'hidden'
       AND b.status <> 'hidden'
    UNION ALL
    SELECT a.id, b.id FROM hosts a
      JOIN hosts b ON b.place = a.place AND b.host = a.host AND b.id > a.id
    UNION ALL
    SELECT a.id, b.id FROM phones a
      JOIN phones b ON b.place = a.place AND b.phone = a.phone AND b.id > a.id
),
pairs AS (
    SELECT DISTINCT least(x, y) AS a_id, greatest(x, y) AS b_id
      FROM raw
     WHERE x <> y
       AND (CAST(:everything AS boolean)
            OR x IN (SELECT unnest(CAST(:ids AS bigint[])))
            OR y IN (SELECT unnest(CAST(:ids AS bigint[]))))
),
