-- Stations in the report's frame (the box :xmin :ymin :xmax :ymax of report_basemap_frame.sql,
-- in the SRID of the indexed column).
SELECT s.name, s.mode, s.line, ST_X(s.geom) AS lon, ST_Y(s.geom) AS lat
  FROM stations s
 WHERE s.geom && ST_MakeEnvelope(:xmin, :ymin, :xmax, :ymax, 4326)
 ORDER BY s.name, s.source_id
