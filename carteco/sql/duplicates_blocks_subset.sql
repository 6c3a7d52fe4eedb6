-- Candidate pairs of a few structures (e.g. the rows an import created) against all
-- others, by index probes: the Lambert-93 GiST index (ST_DWithin around each point), the
-- trigram index for those without a point (same commune or postcode), the same name in the
-- same commune, SIRET and RNA indexes. Continued by duplicates_features.sql.
WITH a AS MATERIALIZED (
    SELECT id, name_key, geom_l93, siret, rna, postcode, insee_code, commune_code
      FROM structures
     WHERE status <> 'hidden' AND id = ANY(CAST(:ids AS bigint[]))
),
raw AS (
    SELECT a.id AS x, b.id AS y
      FROM a JOIN structures b
        ON ST_DWithin(b.geom_l93, a.geom_l93, :radius)
     WHERE b.id <> a.id AND b.status <> 'hidden'
       AND (similarity(a.name_key, b.name_key) >= :sim
            OR b.siret = a.siret OR b.rna = a.rna)
    UNION ALL
    SELECT a.id, b.id
      FROM a JOIN structures b ON b.name_key % a.name_key
     WHERE a.geom_l93 IS NULL AND b.id <> a.id AND b.status <> 'hidden'
       AND (b.postcode = a.postcode
            OR coalesce(b.insee_code, b.commune_code) = coalesce(a.insee_code, a.commune_code))
    UNION ALL
    SELECT a.id, b.id
      FROM a JOIN structures b
        ON b.name_key = a.name_key
       AND coalesce(b.insee_code, b.commune_code) = coalesce(a.insee_code, a.commune_code)
     WHERE b.id <> a.id AND b.status <> 'hidden'
    UNION ALL
    SELECT a.id, b.id FROM a JOIN structures b ON b.siret = a.siret
     WHERE b.id <> a.id AND b.status <> 'hidden'
    UNION ALL
    SELECT a.id, b.id FROM a JOIN structures b ON b.rna = a.rna
     WHERE b.id <> a.id AND b.status <> 'hidden'
),
pairs AS (
    SELECT DISTINCT least(x, y) AS a_id, greatest(x, y) AS b_id FROM raw
),
