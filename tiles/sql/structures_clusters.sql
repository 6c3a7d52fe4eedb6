-- Structures clustered in grid cells aligned on the tile grid (cells never straddle tiles, so
-- a cluster is drawn in exactly one tile): count per cell, dominant sector, and the
-- structure's own id/name when the cell holds a single one.
-- The query box is the tile envelope transformed to 4326: the GiST index on geom is used.
-- Web Mercator x/y are computed with the closed formulas (cheaper than ST_Transform per row).
WITH box AS (
    SELECT ST_TileEnvelope(:z, :x, :y) AS e3857,
           ST_Transform(ST_TileEnvelope(:z, :x, :y), 4326) AS e4326
), pts AS (
    SELECT t.id,
           coalesce(split_part(t.sectors[1], '.', 1), 'inconnu') AS sector,
           ST_X(t.geom) * 111319.49079327357 AS mx,
           ln(tan(radians(45 + ST_Y(t.geom) / 2))) * 6378137 AS my
      FROM structures t
     -- The envelope is written inline (not through the CTE) so the planner folds it to a
     -- constant and estimates the row count, choosing hash aggregation over a sort.
     WHERE t.geom && ST_Transform(ST_TileEnvelope(:z, :x, :y), 4326)
       AND t.status = 'active' /*filter*/
), by_sector AS (
    -- Two hash aggregations (cell × sector, then cell) instead of an ordered-set mode():
    -- no sort of every point.
    SELECT floor((pts.mx - ST_XMin(ST_TileEnvelope(:z, :x, :y))) / :cell) AS cx,
           floor((pts.my - ST_YMin(ST_TileEnvelope(:z, :x, :y))) / :cell) AS cy,
           pts.sector, count(*) AS n, sum(pts.mx) AS sx, sum(pts.my) AS sy, min(pts.id) AS id
      FROM pts
     GROUP BY 1, 2, 3
), cells AS (
    SELECT sum(b.n)::integer AS n, sum(b.sx) / sum(b.n)::float8 AS mx,
           sum(b.sy) / sum(b.n)::float8 AS my,
           (array_agg(b.sector ORDER BY b.n DESC, b.sector))[1] AS sector,
           min(b.id) AS id,
           ST_XMin(ST_TileEnvelope(:z, :x, :y)) + b.cx * :cell AS x0,
           ST_YMin(ST_TileEnvelope(:z, :x, :y)) + b.cy * :cell AS y0,
           -- Each symbol is kept inside its own cell (its centroid moved in by the symbol's
           -- radius, the cluster radius of carte.js plus its stroke, in px of a 32 px cell):
           -- symbols of different cells never overlap.
           (CASE WHEN sum(b.n) > 1 THEN least(14.5, 9 + 2 * log(sum(b.n)::float8)) + 1.5 ELSE 8 END) * :cell / 32.0 AS m
      FROM by_sector b
     GROUP BY b.cx, b.cy
)
SELECT coalesce(ST_AsMVT(q, 'structures', 4096, 'geom'), ''::bytea)
  FROM (
    SELECT c.n AS count, c.sector,
           s.id, s.name,
           array_to_string(s.sectors, ',') AS sectors,
           s.location_precision AS precision,
           s.ess_family AS family,
           ST_AsMVTGeom(ST_SetSRID(ST_MakePoint(
               greatest(c.x0 + c.m, least(c.x0 + :cell - c.m, c.mx)),
               greatest(c.y0 + c.m, least(c.y0 + :cell - c.m, c.my))), 3857),
               box.e3857, 4096, 64, true) AS geom
      FROM cells c CROSS JOIN box
      LEFT JOIN structures s ON c.n = 1 AND s.id = c.id
  ) q
 WHERE q.geom IS NOT NULL
