-- Place names of the basemap: one point per département, commune and municipal arrondissement
-- (a point inside the polygon, so a label never sits outside its territory), with the level
-- and population the style ranks and sizes labels by. Levels appear from their own zoom:
-- départements up to :dep_max, communes from :commune_min (the most populated first: below
-- :commune_all only those of :min_pop inhabitants or more), arrondissements from :arr_min.
WITH box AS (
    SELECT ST_TileEnvelope(:z, :x, :y) AS e3857,
           ST_Transform(ST_TileEnvelope(:z, :x, :y, margin => :margin), 4326) AS e4326
), pts AS (
    SELECT t.code, t.name, t.level, t.population, ST_PointOnSurface(t.geom) AS p
      FROM territories t, box
     WHERE t.geom && box.e4326
       AND ((t.level = 'departement' AND :z <= :dep_max)
            OR (t.level = 'commune' AND :z >= :commune_min
                AND (:z >= :commune_all OR coalesce(t.population, 0) >= :min_pop))
            OR (t.level = 'arrondissement' AND :z >= :arr_min))
)
SELECT coalesce(ST_AsMVT(q, 'noms', 4096, 'geom'), ''::bytea)
  FROM (
    SELECT pts.code, pts.name, pts.level, pts.population,
           ST_AsMVTGeom(ST_Transform(pts.p, 3857), box.e3857, 4096, 64, true) AS geom
      FROM pts, box
     WHERE pts.p && box.e4326
  ) q
 WHERE q.geom IS NOT NULL
