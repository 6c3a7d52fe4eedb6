SELECT count(*) AS n, string_agg(DISTINCT st.layer, ', ') AS layers
  FROM stations st JOIN territories d
    ON d.level = 'departement' AND d.code = :d AND ST_Intersects(d.geom, st.geom)
