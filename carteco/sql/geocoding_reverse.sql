-- Nearest addresses to a point (KNN on the GiST index), within a radius in metres.
SELECT a.id AS address_id, a.ban_id, a.number, a.suffix, a.postcode AS address_postcode,
       s.id AS street_id, s.street, s.street_key, s.insee_code, s.commune, s.postcode,
       s.old_insee_code, s.old_commune, s.is_locality, 1.0 AS sim,
       ST_X(s.geom) AS street_lon, ST_Y(s.geom) AS street_lat,
       ST_X(a.geom) AS lon, ST_Y(a.geom) AS lat,
       ST_Distance(a.geom::geography, q.pt::geography) AS distance
  FROM (SELECT ST_SetSRID(ST_MakePoint(:lon, :lat), 4326) AS pt) q
  CROSS JOIN LATERAL (
        SELECT a.* FROM geo_addresses a ORDER BY a.geom <-> q.pt LIMIT :limit) a
  JOIN geo_streets s ON s.id = a.street_id
 WHERE ST_DWithin(a.geom::geography, q.pt::geography, :radius)
 ORDER BY distance, a.id;
