-- Rebuild the derived streets of the communes whose addresses were just (re)loaded.
-- The street point is a real address of the street, the one nearest its centre.
WITH gone AS (
    DELETE FROM geo_streets WHERE insee_code = ANY(:codes)
), grouped AS (
    SELECT mode() WITHIN GROUP (ORDER BY street) AS street,
           street_key,
           insee_code,
           mode() WITHIN GROUP (ORDER BY commune) AS commune,
           mode() WITHIN GROUP (ORDER BY postcode) AS postcode,
           old_insee_code,
           mode() WITHIN GROUP (ORDER BY old_commune) AS old_commune,
           bool_and(number IS NULL) AS is_locality,
           count(*) AS addresses,
           ST_Collect(geom) AS pts
      FROM geo_addresses
     WHERE insee_code = ANY(:codes)
     GROUP BY insee_code, street_key, old_insee_code
)
INSERT INTO geo_streets (street, street_key, insee_code, commune, postcode, old_insee_code,
                         old_commune, is_locality, addresses, geom)
SELECT street, street_key, insee_code, commune, postcode, old_insee_code, old_commune,
       is_locality, addresses,
       ST_SetSRID(ST_ClosestPoint(pts, ST_Centroid(pts)), 4326)
  FROM grouped
 ORDER BY insee_code, street_key, old_insee_code;

UPDATE geo_addresses a
   SET street_id = s.id
  FROM geo_streets s
 WHERE a.insee_code = ANY(:codes)
   AND s.insee_code = a.insee_code
   AND s.street_key = a.street_key
   AND s.old_insee_code IS NOT DISTINCT FROM a.old_insee_code;
