-- Contrats de ville whose point lies in département :d, and those named by the codes :codes
-- (posts of :d may name a contrat de ville whose published centre is in another département).
SELECT c.code, c.name, c.departement_code, ST_X(c.geom) AS lon, ST_Y(c.geom) AS lat
  FROM contrats_ville c
 WHERE c.departement_code = :d OR c.code = ANY(:codes)
 ORDER BY c.code
