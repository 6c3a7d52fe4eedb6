-- Structures of a département, each with its commune resolved: the commune polygon that holds
-- its point when communes are loaded (IDF), else its INSEE code, else its postcode (when the
-- postcode names one commune, or the commune name settles it). Arrondissements → their commune.
WITH base AS (
    SELECT s.id, s.name, s.ess_family, s.sectors, s.geom, s.qpv_code, s.source,
           s.location_precision,
           s.departement_code AS geom_dep,
           coalesce(s.commune_code, s.insee_code, (
               SELECT CASE WHEN count(DISTINCT p.insee_code) = 1 THEN min(p.insee_code)
                           ELSE min(p.insee_code) FILTER (
                               WHERE lower(unaccent(p.commune_name))
                                   = lower(unaccent(s.commune_name))) END
                 FROM postcodes p WHERE p.postcode = s.postcode)) AS raw_commune
      FROM structures s
     WHERE s.status = 'active'
), resolved AS (
    SELECT b.*, coalesce(a.parent_code, b.raw_commune) AS commune
      FROM base b
      LEFT JOIN communes_ref a ON a.code = b.raw_commune AND a.type = 'arrondissement-municipal'
)
SELECT r.id, r.name, r.ess_family, r.sectors, r.qpv_code, r.source,
       c.code AS commune_code,
       ST_X(r.geom) AS lon, ST_Y(r.geom) AS lat,
       r.geom IS NOT NULL AS located,
       -- A point at the commune's centre says nothing about a QPV: left out of QPV shares.
       r.geom IS NOT NULL AND coalesce(r.location_precision, '') <> 'municipality' AS precise,
       CASE WHEN r.geom IS NULL THEN NULL ELSE EXISTS (
           SELECT 1 FROM territories q
            WHERE q.level = 'qpv'
              AND q.geom && ST_Transform(ST_Expand(ST_Transform(r.geom, 2154), :buffer_m), 4326)
              AND ST_DWithin(ST_Transform(q.geom, 2154), ST_Transform(r.geom, 2154), :buffer_m))
       END AS near_qpv
  FROM resolved r
  LEFT JOIN communes_ref c ON c.code = r.commune AND c.type = 'commune-actuelle'
 WHERE c.departement_code = :dep OR (c.code IS NULL AND r.geom_dep = :dep)
