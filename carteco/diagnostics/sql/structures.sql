-- Structures of a département, each with its commune resolved. A located structure is tagged by
-- point-in-polygon: the commune polygon holding its point (the tagging trigger's commune_code),
-- else the nearest commune polygon within 2 km (a point just off a simplified coastline or in
-- a sliver between two outlines). A structure without coordinates falls back on its INSEE code,
-- then on its postcode: the one commune of that postcode, or the one whose name matches the
-- declared commune once both are normalised ("ST GAUDENS" = "Saint-Gaudens",
-- "CHARLEVILLE MEZIERES" = "Charleville-Mézières"). Arrondissements → their commune.
WITH base AS (
    SELECT s.id, s.name, s.ess_family, s.sectors, s.geom, s.qpv_code, s.source,
           s.location_precision,
           s.departement_code AS geom_dep,
           CASE WHEN s.geom IS NOT NULL THEN coalesce(s.commune_code, (
               SELECT t.code FROM territories t
                WHERE t.level = 'commune'
                  AND t.geom && ST_Expand(s.geom, 0.03)
                  AND ST_DWithin(t.geom::geography, s.geom::geography, 2000)
                ORDER BY ST_Distance(t.geom::geography, s.geom::geography), t.code
                LIMIT 1))
           END AS polygon_commune,
           s.insee_code, s.postcode,
           -- Accents, case, punctuation and the postal abbreviations ST / STE folded away.
           regexp_replace(regexp_replace(
               regexp_replace(lower(unaccent(coalesce(s.commune_name, ''))), '[^a-z0-9]+', ' ',
                              'g'),
               '\mst\M', 'saint', 'g'), '\mste\M', 'sainte', 'g') AS commune_key
      FROM structures s
     WHERE s.status = 'active'
), keyed AS (
    SELECT b.*, coalesce(b.polygon_commune, b.insee_code, (
               SELECT CASE WHEN count(DISTINCT p.insee_code) = 1 THEN min(p.insee_code)
                           ELSE min(p.insee_code) FILTER (WHERE b.commune_key IN (
                               regexp_replace(regexp_replace(regexp_replace(
                                   lower(unaccent(p.commune_name)), '[^a-z0-9]+', ' ', 'g'),
                                   '\mst\M', 'saint', 'g'), '\mste\M', 'sainte', 'g'),
                               regexp_replace(regexp_replace(regexp_replace(
                                   lower(unaccent(coalesce(p.delivery_label, ''))),
                                   '[^a-z0-9]+', ' ', 'g'),
                                   '\mst\M', 'saint', 'g'), '\mste\M', 'sainte', 'g')))
                      END
                 FROM postcodes p WHERE p.postcode = b.postcode)) AS raw_commune
      FROM base b
), resolved AS (
    SELECT k.*, coalesce(a.parent_code, k.raw_commune) AS commune
      FROM keyed k
      LEFT JOIN communes_ref a ON a.code = k.raw_commune AND a.type = 'arrondissement-municipal'
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
