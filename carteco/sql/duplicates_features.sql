-- The features of each candidate pair (the `pairs` CTE of a duplicates_blocks_*.sql) that
-- decide its score, except the address (duplicates_details.sql, for the pairs that may
-- still reach the threshold): a pair already decided (merged, kept apart) is left out.
undecided AS (
    SELECT p.a_id, p.b_id FROM pairs p
     WHERE NOT EXISTS (SELECT 1 FROM duplicate_decisions d
                        WHERE d.a_id = p.a_id AND d.b_id = p.b_id)
)
SELECT p.a_id, p.b_id, sa.name_key AS key_a, sb.name_key AS key_b,
       similarity(sa.name_key, sb.name_key) AS sim,
       ST_Distance(sa.geom_l93, sb.geom_l93) AS dist,
       sa.siret IS NOT NULL AND sa.siret = sb.siret AS same_siret,
       coalesce(sa.siren, left(sa.siret, 9)) = coalesce(sb.siren, left(sb.siret, 9))
           AS same_siren,
       sa.rna IS NOT NULL AND sa.rna = sb.rna AS same_rna,
       coalesce(sa.insee_code, sa.commune_code) = coalesce(sb.insee_code, sb.commune_code)
           OR sa.postcode = sb.postcode AS same_commune,
       sa.address_line IS NOT NULL AND sb.address_line IS NOT NULL
           AND (sa.postcode = sb.postcode OR sa.insee_code = sb.insee_code
                OR sa.commune_code = sb.commune_code) AS address_comparable,
       sa.website AS web_a, sb.website AS web_b,
       CASE WHEN sa.extra ?| CAST(:phone_keys AS text[])
            THEN ARRAY[sa.extra->>'phone', sa.extra->>'telephone', sa.extra->>'téléphone',
                       sa.extra->>'tel', sa.extra->>'telephone_fixe'] END AS phones_a,
       CASE WHEN sb.extra ?| CAST(:phone_keys AS text[])
            THEN ARRAY[sb.extra->>'phone', sb.extra->>'telephone', sb.extra->>'téléphone',
                       sb.extra->>'tel', sb.extra->>'telephone_fixe'] END AS phones_b,
       sa.source = sb.source AS same_source
  FROM undecided p
  JOIN structures sa ON sa.id = p.a_id
  JOIN structures sb ON sb.id = p.b_id
