-- Outlines of one territory level, cut to the tile and simplified to about a pixel.
WITH box AS (
    SELECT ST_TileEnvelope(:z, :x, :y) AS e3857,
           ST_Transform(ST_TileEnvelope(:z, :x, :y, margin => :margin), 4326) AS e4326
)
SELECT coalesce(ST_AsMVT(q, :layer, 4096, 'geom'), ''::bytea)
  FROM (
    SELECT t.code, t.name, t.level, t.population,
           ST_AsMVTGeom(
               -- Cut to the tile (with its margin) first: a département's thousands of
               -- vertices are not simplified again for every zoom-14 tile it touches.
               ST_Transform(ST_SimplifyPreserveTopology(
                   CASE WHEN ST_Contains(box.e4326, t.geom) THEN t.geom
                        ELSE ST_ClipByBox2D(t.geom, box.e4326) END, :tolerance), 3857),
               box.e3857, 4096, 64, true) AS geom
      FROM territories t, box
     WHERE t.geom && box.e4326 AND t.level = :level /*filter*/
  ) q
 WHERE q.geom IS NOT NULL
