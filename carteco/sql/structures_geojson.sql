-- Located, active structures as one RFC 7946 FeatureCollection, built in the database.
SELECT json_build_object(
    'type', 'FeatureCollection',
    'features', coalesce(json_agg(json_build_object(
        'type', 'Feature',
        'id', s.id,
        'geometry', ST_AsGeoJSON(s.geom, 6)::json,
        'properties', json_build_object(
            'nom', s.name,
            'secteurs', s.sectors,
            'famille', s.ess_family,
            'adresse', s.address_line,
            'code_postal', s.postcode,
            'commune', s.commune_name,
            'code_commune', s.commune_code,
            'site_web', s.website,
            'precision', s.location_precision,
            'source', s.source
        )
    ) ORDER BY s.id), '[]'::json)
)::text
FROM (
    SELECT * FROM structures
     WHERE geom IS NOT NULL AND status = 'active'
     ORDER BY id
     LIMIT :limit
) s
