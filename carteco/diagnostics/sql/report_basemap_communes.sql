-- Communes of the report's frame (the box :xmin :ymin :xmax :ymax of
-- report_basemap_frame.sql, in the SRID of the indexed column): label point and population for
-- every one, an outline simplified by :tolerance for those of other départements (the
-- département's own are drawn from their full outlines).
SELECT t.code, t.name, t.departement_code, t.population,
       t.departement_code IS NOT DISTINCT FROM :d AS own,
       ST_X(p.pt) AS lon, ST_Y(p.pt) AS lat,
       CASE WHEN t.departement_code IS DISTINCT FROM :d
            THEN ST_AsGeoJSON(ST_SimplifyPreserveTopology(t.geom, :tolerance), 4)
       END AS g
  FROM territories t
 CROSS JOIN LATERAL (SELECT ST_PointOnSurface(t.geom) AS pt) p
 WHERE t.level = 'commune' AND t.geom && ST_MakeEnvelope(:xmin, :ymin, :xmax, :ymax, 4326)
 ORDER BY t.population DESC NULLS LAST, t.code
