-- What the pairs that may reach the threshold still need: the same address (normalised like
-- the names, in the same postcode or commune) and each structure's summary.
SELECT p.a_id, p.b_id,
       CASE WHEN sa.address_line IS NOT NULL AND sb.address_line IS NOT NULL
                 AND (sa.postcode = sb.postcode OR sa.insee_code = sb.insee_code
                      OR sa.commune_code = sb.commune_code)
            THEN carteco_name_key(sa.address_line) <> ''
                 AND carteco_name_key(sa.address_line) = carteco_name_key(sb.address_line)
            ELSE false END AS same_address,
       json_build_object('id', sa.id, 'name', sa.name, 'source', sa.source,
                         'source_id', sa.source_id, 'commune', sa.commune_name,
                         'siret', sa.siret, 'rna', sa.rna, 'status', sa.status) AS ja,
       json_build_object('id', sb.id, 'name', sb.name, 'source', sb.source,
                         'source_id', sb.source_id, 'commune', sb.commune_name,
                         'siret', sb.siret, 'rna', sb.rna, 'status', sb.status) AS jb
  FROM unnest(CAST(:a AS bigint[]), CAST(:b AS bigint[])) AS p(a_id, b_id)
  JOIN structures sa ON sa.id = p.a_id
  JOIN structures sb ON sb.id = p.b_id
