-- Sites of a département with the nearest station (Lambert-93 distance; the KNN on the
-- indexed column picks candidates, the exact metric distance decides).
SELECT s.id, s.source, s.source_id, s.name, s.kind, s.site_type, s.status, s.usages,
       s.surface_m2, s.built_surface_m2, s.owner_type, s.pollution, s.origin, s.rent_eur_month, s.price_eur,
       s.address, s.commune_code, s.epci_code, s.departement_code,
       ST_X(s.geom) AS lon, ST_Y(s.geom) AS lat,
       ST_AsGeoJSON(s.footprint, 6) AS footprint,
       st.name AS station_name, st.distance_m AS station_distance_m,
       ARRAY(SELECT x.id FROM structures x
         WHERE s.geom IS NOT NULL AND x.status = 'active'
           AND x.geom && ST_Transform(ST_Expand(ST_Transform(s.geom, 2154), 2000), 4326)
           AND ST_DWithin(ST_Transform(x.geom, 2154), ST_Transform(s.geom, 2154), 2000)
       ) AS structures_2km_ids
  FROM land_sites s
  LEFT JOIN LATERAL (
      SELECT c.name, ST_Distance(ST_Transform(c.geom, 2154), ST_Transform(s.geom, 2154)) AS distance_m
        FROM (SELECT name, geom FROM stations ORDER BY geom <-> s.geom LIMIT 8) c
       ORDER BY 2 LIMIT 1
  ) st ON :with_stations AND s.geom IS NOT NULL
 WHERE s.departement_code = :dep
 ORDER BY s.source, s.source_id
