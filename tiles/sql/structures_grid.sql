-- Clusters of zooms 0–12 read from the cluster grid (tile_grid: z14 or z16 cells kept in
-- step with structures by triggers): the same cells, counts, centroids and dominant sectors
-- as structures_clusters.sql, without visiting every point. Used only when no filter applies.
-- :gz = grid zoom; :shift = gz - z (grid cells per tile side = 2^shift); :cshift = shift - 4.
WITH g AS (
    SELECT g.cx >> :cshift AS kx, g.cy >> :cshift AS ky, g.sector, g.n, g.sx, g.sy, g.sid
      FROM tile_grid g
     -- Casts: small values may be bound as smallint, whose shifts would overflow.
     WHERE g.z = :gz
       AND g.cx BETWEEN (CAST(:x AS integer) << :shift) AND ((CAST(:x AS integer) + 1) << :shift) - 1
       AND g.cy BETWEEN (CAST(:y AS integer) << :shift) AND ((CAST(:y AS integer) + 1) << :shift) - 1
), by_sector AS (
    SELECT kx, ky, sector, sum(n) AS n, sum(sx) AS sx, sum(sy) AS sy, sum(sid) AS sid
      FROM g GROUP BY 1, 2, 3
), cells AS (
    SELECT sum(b.n)::integer AS n, sum(b.sx) / sum(b.n)::float8 AS mx,
           sum(b.sy) / sum(b.n)::float8 AS my,
           (array_agg(b.sector ORDER BY b.n DESC, b.sector))[1] AS sector,
           sum(b.sid) AS sid,
           -- Cell corners: kx from the west, ky from the north of the Web Mercator square.
           b.kx * :cell - 20037508.342789244 AS x0,
           20037508.342789244 - (b.ky + 1) * :cell AS y0,
           -- Each symbol is kept inside its own cell (see structures_clusters.sql); computed
           -- here, with the aggregates, rather than in a CTE of its own (3 % of a cold tile).
           (CASE WHEN sum(b.n) > 1 THEN least(14.5, 9 + 2 * log(sum(b.n)::float8)) + 1.5 ELSE 8 END) * :cell / 32.0 AS m
      FROM by_sector b
     GROUP BY b.kx, b.ky
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
               ST_TileEnvelope(:z, :x, :y), 4096, 64, true) AS geom
      FROM cells c
      LEFT JOIN structures s ON c.n = 1 AND s.id = c.sid::bigint
  ) q
 WHERE q.geom IS NOT NULL
