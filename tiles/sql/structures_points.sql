-- Individual structures at high zooms, with a render margin so symbols near an edge are not
-- cut. The query box is the margin envelope transformed to 4326 (index on geom used).
WITH box AS (
    SELECT ST_TileEnvelope(:z, :x, :y) AS e3857,
           ST_Transform(ST_TileEnvelope(:z, :x, :y, margin => :margin), 4326) AS e4326
)
SELECT coalesce(ST_AsMVT(q, 'structures', 4096, 'geom', 'fid'), ''::bytea)
  FROM (
    SELECT t.id AS fid, t.id, 1 AS count, t.name,
           array_to_string(t.sectors, ',') AS sectors,
           coalesce(split_part(t.sectors[1], '.', 1), 'inconnu') AS sector,
           t.location_precision AS precision,
           t.ess_family AS family,
           t.commune_name AS commune,
           ST_AsMVTGeom(ST_Transform(t.geom, 3857), box.e3857, 4096, 64, true) AS geom
      FROM structures t, box
     WHERE t.geom && box.e4326 AND t.status = 'active' /*filter*/
  ) q
 WHERE q.geom IS NOT NULL
