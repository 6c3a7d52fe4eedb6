-- Railway, RER, metro and tram stations of the basemap: the shipped table has one row per
-- station and line, so rows of the same name are merged into one point with their modes
-- (e.g. "METRO,RER") and lines.
WITH box AS (
    SELECT ST_TileEnvelope(:z, :x, :y) AS e3857,
           ST_Transform(ST_TileEnvelope(:z, :x, :y, margin => :margin), 4326) AS e4326
), merged AS (
    SELECT s.name,
           string_agg(DISTINCT s.mode, ',' ORDER BY s.mode) AS modes,
           string_agg(DISTINCT s.line, ',' ORDER BY s.line) AS lines,
           ST_Centroid(ST_Collect(s.geom)) AS p
      FROM stations s, box
     WHERE s.geom && box.e4326
     GROUP BY s.name
)
SELECT coalesce(ST_AsMVT(q, 'gares', 4096, 'geom'), ''::bytea)
  FROM (
    SELECT m.name, m.modes, m.lines,
           -- Heavy rail first: a train or RER station outranks a metro or tram stop.
           CASE WHEN m.modes ~ '(TRAIN|RER)' THEN 1 WHEN m.modes ~ 'METRO' THEN 2 ELSE 3 END
               AS rank,
           ST_AsMVTGeom(ST_Transform(m.p, 3857), box.e3857, 4096, 64, true) AS geom
      FROM merged m, box
  ) q
 WHERE q.geom IS NOT NULL
